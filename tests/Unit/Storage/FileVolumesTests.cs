using CriRuntime.Config;
using CriRuntime.Interop;
using CriRuntime.Kernel;
using CriRuntime.Storage;
using CriRuntime.Tests.Unit.Kernel;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Storage;

/// <summary>The file-backed volume's kernel calls, against the recording kernel (no root, no
/// loop devices). The template exists already, so mke2fs never runs here.</summary>
public sealed class FileVolumesTests : IDisposable
{
    private const ulong Size = 64UL << 20;
    private readonly string _root = Directory.CreateTempSubdirectory("fv-").FullName;
    private readonly RecordingHostKernel _kernel = new();
    private readonly FileVolumes _volumes;
    private readonly string _dir;

    public FileVolumesTests()
    {
        _volumes = new FileVolumes(new CriRuntimeConfig { Root = _root }, _kernel, NullLogger<FileVolumes>.Instance);
        Directory.CreateDirectory(_volumes.TemplateDir);
        File.WriteAllText(Path.Combine(_volumes.TemplateDir, $"ext4-{Size}.img"), "");
        _kernel.Types["/dev/loop7"] = Libc.S_IFBLK;
        _dir = Path.Combine(_root, "containers", "c1");
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Create_CopiesTheTemplate_AttachesALoopDeviceWithDirectIoAndAutoclear_AndMountsIt()
    {
        var v = _volumes.Create(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size);

        Assert.Equal(
        [
            $"copy_sparse {_volumes.TemplateDir}/ext4-{Size}.img {_dir}/volume.img {Size}",
            "ioctl /dev/loop-control LOOP_CTL_GET_FREE",
            $"ioctl /dev/loop7 LOOP_CONFIGURE {_dir}/volume.img autoclear|direct_io",
            $"mount /dev/loop7 {_dir}/volume ext4 0x400 noinit_itable",
        ], _kernel.Calls);
        Assert.Equal(new WritableVolume($"{_dir}/volume.img", $"{_dir}/volume", Size) { Device = "/dev/loop7" }, v);
        Assert.Equal(_volumes.TemplateSizes(), [Size]);
    }

    [Fact]
    public void Create_MakesTheLoopDeviceNode_WhenDevHasNone()
    {
        _kernel.Types["/dev/loop7"] = null;

        _volumes.Create(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size);

        Assert.Contains($"mknod /dev/loop7 {Convert.ToString(Libc.S_IFBLK | 0x1B0, 8)} {FileVolumes.MakeDev(7, 7)}", _kernel.Calls);
    }

    [Fact]
    public void Create_WhenTheMountFails_DeletesTheImage_AndThrows()
    {
        _kernel.Failures["mount"] = Errno.EINVAL;
        File.WriteAllText(Path.Combine(_dir, "volume.img"), "copied");

        Assert.Throws<KernelException>(() => _volumes.Create(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size));

        Assert.False(File.Exists(Path.Combine(_dir, "volume.img")));
    }

    [Fact]
    public void Release_UnmountsThenDeletesTheImage_AndIsIdempotent()
    {
        var v = new WritableVolume(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size);
        File.WriteAllText(v.Image, "");

        _volumes.Release(v);
        _kernel.Failures["umount2"] = Errno.EINVAL; // not mounted any more
        _volumes.Release(v);

        Assert.Equal([$"umount2 {v.MountPoint} 0"], _kernel.Calls);
        Assert.False(File.Exists(v.Image));
    }

    [Fact]
    public void Release_WhenTheVolumeIsBusy_DetachesIt()
    {
        var v = new WritableVolume(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size);
        _kernel.Failures[$"umount2 {v.MountPoint} 0"] = Errno.EBUSY;

        _volumes.Release(v);

        Assert.Equal([$"umount2 {v.MountPoint} {Libc.MNT_DETACH}"], _kernel.Calls);
    }

    [Fact]
    public void Usage_ComesFromStatfsOfTheMountedVolume_AndIsNullWhenNotMounted()
    {
        var v = new WritableVolume(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size);
        _kernel.FileSystems[v.MountPoint] = new FsUsage(FsUsage.Ext4Magic, Size - (1 << 20), Size - (9 << 20), 16384, 16000);

        Assert.Equal(8UL << 20, _volumes.Usage(v)!.Value.UsedBytes);
        Assert.Equal(384UL, _volumes.Usage(v)!.Value.UsedInodes);

        // Not mounted: statfs answers for the storage root's file system, far larger than the volume.
        _kernel.FileSystems[v.MountPoint] = new FsUsage(FsUsage.Ext4Magic, 1UL << 40, 1UL << 39, 1 << 24, 1 << 23);
        Assert.Null(_volumes.Usage(v));
    }

    [Fact]
    public void Reattach_MountsAnUnmountedVolumeFromItsImage_AndLeavesAMountedOneAlone()
    {
        var v = new WritableVolume(Path.Combine(_dir, "volume.img"), Path.Combine(_dir, "volume"), Size);
        File.WriteAllText(v.Image, "");
        _kernel.FileSystems[v.MountPoint] = new FsUsage(FsUsage.Ext4Magic, 1UL << 40, 1UL << 39, 1 << 24, 1 << 23);

        Assert.Equal("/dev/loop7", _volumes.Reattach(v)?.Device);
        Assert.Contains($"mount /dev/loop7 {v.MountPoint} ext4 0x400 noinit_itable", _kernel.Calls);

        _kernel.Calls.Clear();
        _kernel.FileSystems[v.MountPoint] = new FsUsage(FsUsage.Ext4Magic, Size, Size / 2, 16384, 16000);
        Assert.Null(_volumes.Reattach(v));
        Assert.Empty(_kernel.Calls);
    }
}
