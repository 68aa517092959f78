using CriRuntime.Config;
using CriRuntime.Interop;
using CriRuntime.Storage;
using CriRuntime.Tests.Unit.Kernel;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Storage;

/// <summary>The warm volume pool against the recording kernel: what CreateContainer's path costs
/// once a volume is warm (a rename, a bind mount, an unmount), and that nothing in the pool
/// outlives a stop or a restart.</summary>
public sealed class VolumePoolTests : IDisposable
{
    private const ulong Size = 64UL << 20;
    private readonly string _root = Directory.CreateTempSubdirectory("vp-").FullName;
    private readonly RecordingHostKernel _kernel = new();
    private readonly FileVolumes _files;

    public VolumePoolTests()
    {
        _files = new FileVolumes(new CriRuntimeConfig { Root = _root }, _kernel, NullLogger<FileVolumes>.Instance);
        Directory.CreateDirectory(_files.TemplateDir);
        foreach (var s in new ulong[] { 16, 32, 48, 64, 80 })
            File.WriteAllText(Path.Combine(_files.TemplateDir, $"ext4-{s << 20}.img"), "");
        _kernel.Types["/dev/loop7"] = Libc.S_IFBLK;
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private VolumePool Pool(int target = 2) =>
        new(_files, new CriRuntimeConfig { Root = _root, Storage = new StorageSection { VolumePool = target } }, _kernel, NullLogger<VolumePool>.Instance);

    private string Dir(string id) => Path.Combine(_root, "containers", id);

    private WritableVolume Create(VolumePool pool, string id, ulong size = Size) =>
        pool.Create(Path.Combine(Dir(id), "volume.img"), Path.Combine(Dir(id), "volume"), size);

    [Fact]
    public void OnceASizeIsWarm_CreateOnlyRenamesTheImage_BindsTheMount_AndDetachesThePoolsMountPoint()
    {
        using var pool = Pool();
        Create(pool, "c1");
        pool.Refill(Size);
        Assert.Equal(2, pool.Warm()[Size]);
        _kernel.Calls.Clear();

        var v = Create(pool, "c2");

        var warmDir = Path.GetDirectoryName(_kernel.Calls[0].Split(' ')[1])!;
        Assert.Equal(
        [
            $"rename {warmDir}/volume.img {Dir("c2")}/volume.img",
            $"mount {warmDir}/volume {Dir("c2")}/volume - 0x{Libc.MS_BIND:x}",
            $"umount2 {warmDir}/volume 0",
        ], _kernel.Calls);
        Assert.Equal(new WritableVolume($"{Dir("c2")}/volume.img", $"{Dir("c2")}/volume", Size) { Device = "/dev/loop7" }, v);
        Assert.True(File.Exists(v.Image));
        Assert.False(Directory.Exists(warmDir));
        Assert.Equal(1, pool.Warm()[Size]);
    }

    [Fact]
    public void ASizeNotSeenBefore_IsMadeCold_AndThenKeptWarm()
    {
        using var pool = Pool();

        Create(pool, "c1", 32UL << 20);

        Assert.StartsWith($"copy_sparse {_files.TemplateDir}/ext4-{32UL << 20}.img {Dir("c1")}/volume.img", _kernel.Calls[0]);
        Assert.Equal(0, pool.Warm()[32UL << 20]);
        pool.Refill(32UL << 20);
        Assert.Equal(2, pool.Warm()[32UL << 20]);
    }

    [Fact]
    public void AnImageThatCannotBeRenamedThere_IsMadeCold_AndTheWarmVolumeStaysInThePool()
    {
        using var pool = Pool();
        Create(pool, "c1");
        pool.Refill(Size);
        _kernel.Failures["rename"] = Errno.EXDEV; // the image is wanted inside a pod's volume
        _kernel.Calls.Clear();

        var v = Create(pool, "c2");

        Assert.StartsWith($"copy_sparse {_files.TemplateDir}/ext4-{Size}.img {Dir("c2")}/volume.img", _kernel.Calls[0]);
        Assert.Equal($"{Dir("c2")}/volume", v.MountPoint);
        Assert.Equal(2, pool.Warm()[Size]);
    }

    [Fact]
    public void WarmVolumesWhoseBindFails_AreReleased_AndTheVolumeIsMadeCold()
    {
        using var pool = Pool();
        Create(pool, "c1");
        pool.Refill(Size);
        _kernel.Failures[$"mount {pool.PoolDir}"] = Errno.EINVAL;

        _kernel.Calls.Clear();

        var v = Create(pool, "c2");

        // Both warm ones were tried and released; the volume was made cold (its mount's source is
        // the loop device, which does not fail).
        Assert.Equal(2, _kernel.Calls.Count(c => c.StartsWith($"umount2 {pool.PoolDir}/", StringComparison.Ordinal)));
        Assert.Contains(_kernel.Calls, c => c.StartsWith($"copy_sparse {_files.TemplateDir}/ext4-{Size}.img {Dir("c2")}/volume.img", StringComparison.Ordinal));
        Assert.Equal($"{Dir("c2")}/volume", v.MountPoint);
        Assert.True(File.Exists(v.Image));
        Assert.Equal(0, pool.Warm()[Size]);
        Assert.Empty(Directory.GetDirectories(pool.PoolDir));
    }

    [Fact]
    public void Dispose_ReleasesEveryWarmVolume_AndSweep_RemovesWhatACrashedDaemonLeft()
    {
        var pool = Pool();
        Create(pool, "c1");
        pool.Refill(Size);
        _kernel.Calls.Clear();

        pool.Dispose();

        Assert.Equal(2, _kernel.Calls.Count(c => c.StartsWith($"umount2 {pool.PoolDir}/", StringComparison.Ordinal)));
        Assert.Empty(Directory.GetDirectories(pool.PoolDir));

        // A daemon killed with its pool full: the next start unmounts and deletes it.
        Directory.CreateDirectory(Path.Combine(pool.PoolDir, "left", "volume"));
        File.WriteAllText(Path.Combine(pool.PoolDir, "left", "volume.img"), "");
        _kernel.Calls.Clear();
        Pool().Sweep();
        Assert.Equal([$"umount2 {pool.PoolDir}/left/volume 0"], _kernel.Calls);
        Assert.Empty(Directory.GetDirectories(pool.PoolDir));
    }

    [Fact]
    public void BeyondFourSizes_TheLeastRecentlyUsedSizeIsLetGo()
    {
        using var pool = Pool(target: 1);
        foreach (var (s, i) in new ulong[] { 16, 32, 48, 64 }.Select((s, i) => (s << 20, i)))
        {
            Create(pool, $"c{i}", s);
            pool.Refill(s);
        }
        Assert.Equal(4, pool.Warm().Count);

        Create(pool, "c5", 80UL << 20);
        pool.Refill(80UL << 20);

        Assert.DoesNotContain(16UL << 20, pool.Warm().Keys);
        Assert.Equal(1, pool.Warm()[80UL << 20]);
        Assert.Equal(4, Directory.GetDirectories(pool.PoolDir).Length);
    }

    [Fact]
    public void WithoutAPool_EveryVolumeIsMadeCold_AndNothingIsMadeAhead()
    {
        using var pool = Pool(target: 0);
        Create(pool, "c1");
        pool.Refill(Size);

        Assert.Empty(pool.Warm());
        Assert.False(Directory.Exists(pool.PoolDir));
    }
}
