using System.Formats.Tar;
using System.Text;
using System.Text.Json;
using CriRuntime.Checkpoint;
using CriRuntime.Interop;
using CriRuntime.Oci;
using CriRuntime.Tests.Unit.Kernel;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>A container's own tmpfs mounts, captured by the daemon instead of CRIU's tar and gzip:
/// what the capture writes, what an archive may claim, and what a restore mounts.</summary>
public sealed class TmpfsContentTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tmpfs-content-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void SafeOptions_KeepSizeInodesModeAndOwner_AndDropEverythingElse()
    {
        Assert.Equal("size=65536k,mode=755,inode64", TmpfsContent.SafeOptions("rw,size=65536k,mode=755,inode64"));
        Assert.Equal("nr_inodes=1k,uid=1000,gid=5,huge=never", TmpfsContent.SafeOptions("ro,nr_inodes=1k,uid=1000,gid=5,huge=never,mpol=bind:0,noswap,quota"));
        Assert.False(TmpfsContent.AreSafe("size=1g,mode=u+s"));
        Assert.False(TmpfsContent.AreSafe("size=1g,x-foo=bar"));
        Assert.True(TmpfsContent.AreSafe(""));
    }

    /// <summary>The walk of /dev as a fresh container has it: files, directories and symlinks are
    /// taken; what is mounted on top (pts, the /dev/null bind) is kept as an empty directory or file
    /// to mount onto, without what the mount shows; devices and sockets are left out.</summary>
    [Fact]
    public void Capture_TakesFilesDirsAndLinks_KeepsMountPointsEmpty_AndLeavesDevicesOut()
    {
        var root = Path.Combine(_dir, "root");
        var dev = Path.Combine(root, "dev");
        Directory.CreateDirectory(Path.Combine(dev, "pts"));
        File.WriteAllText(Path.Combine(dev, "pts", "0"), "what devpts shows");
        File.WriteAllText(Path.Combine(dev, "null"), "what the bind shows");
        Directory.CreateDirectory(Path.Combine(dev, "shm"));
        File.WriteAllText(Path.Combine(dev, "shm", "segment"), "the other tmpfs's");
        Directory.CreateDirectory(Path.Combine(dev, "cache", "deep"));
        File.WriteAllText(Path.Combine(dev, "cache", "deep", "kept.txt"), "kept");
        File.CreateSymbolicLink(Path.Combine(dev, "fd"), "/proc/self/fd");
        using (var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
            s.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Combine(dev, "log")));
        var tmpfs = new[] { new MountInfo("/dev", "/", "tmpfs", "rw,nosuid,size=65536k,mode=755"), new MountInfo("/dev/shm", "/", "tmpfs", "rw,size=1m") };
        var out_ = Path.Combine(_dir, "out");
        Directory.CreateDirectory(out_);

        var dump = TmpfsContent.Capture(root, tmpfs, ["/", "/dev", "/dev/pts", "/dev/null", "/dev/shm"], out_);

        Assert.Equal([new TmpfsMount { Path = "/dev", Options = "size=65536k,mode=755" }, new TmpfsMount { Path = "/dev/shm", Options = "size=1m" }], dump.Mounts);
        var entries = Entries(Path.Combine(out_, "tmpfs-0.tar"));
        Assert.Equal(["cache", "cache/deep", "cache/deep/kept.txt", "fd", "null", "pts", "shm"], entries.Keys.Order(StringComparer.Ordinal));
        Assert.Equal((TarEntryType.Directory, ""), entries["pts"]);
        Assert.Equal((TarEntryType.RegularFile, ""), entries["null"]);
        Assert.Equal((TarEntryType.Directory, ""), entries["shm"]);
        Assert.Equal((TarEntryType.SymbolicLink, "/proc/self/fd"), entries["fd"]);
        Assert.Equal((TarEntryType.RegularFile, "kept"), entries["cache/deep/kept.txt"]);
        Assert.Equal(["segment"], Entries(Path.Combine(out_, "tmpfs-1.tar")).Keys);
    }

    /// <summary>tmpfs-0.tar in the test's directory, holding <paramref name="entries"/>.</summary>
    private string WriteTar(params TarEntry[] entries)
    {
        var tar = Path.Combine(_dir, "tmpfs-0.tar");
        using var w = new TarWriter(File.Create(tar), TarEntryFormat.Pax, leaveOpen: false);
        foreach (var e in entries) w.WriteEntry(e);
        return tar;
    }

    /// <summary>The bundle's restore plan, as CreateContainer writes it.</summary>
    private static void WritePlan(string bundle, List<TmpfsRestore> plan) =>
        File.WriteAllText(Path.Combine(bundle, TmpfsContent.RestoreFile), JsonSerializer.Serialize(plan, new JsonSerializerOptions(JsonSerializerDefaults.Web)));

    private static Dictionary<string, (TarEntryType Type, string Content)> Entries(string tar)
    {
        var result = new Dictionary<string, (TarEntryType, string)>();
        using var reader = new TarReader(File.OpenRead(tar));
        while (reader.GetNextEntry() is { } e)
            result[e.Name] = (e.EntryType, e.EntryType == TarEntryType.SymbolicLink ? e.LinkName
                : e.DataStream is null ? "" : new StreamReader(e.DataStream).ReadToEnd());
        return result;
    }

    [Theory]
    [InlineData("relative", "dev", "size=1m")]
    [InlineData("dotdot", "/dev/../etc", "size=1m")]
    [InlineData("root", "/", "size=1m")]
    [InlineData("option", "/dev", "size=1m,exec")]
    public void Validate_RefusesAPathOutsideOrAnUnsafeOption_NamingIt(string why, string path, string options)
    {
        var dump = new TmpfsDump { Mounts = [new TmpfsMount { Path = path, Options = options }] };
        var e = Assert.Throws<InvalidDataException>(() => TmpfsContent.Validate(dump, new HashSet<int> { 0 }));
        Assert.Contains("mounts[0]", e.Message);
        Assert.Contains(why == "option" ? "options" : "path", e.Message);
    }

    [Fact]
    public void Validate_RefusesADuplicate_AMissingTar_AndATarWithoutAMount()
    {
        var two = new TmpfsDump { Mounts = [new TmpfsMount { Path = "/dev" }, new TmpfsMount { Path = "/dev/" }] };
        Assert.Contains("twice", Assert.Throws<InvalidDataException>(() => TmpfsContent.Validate(two, new HashSet<int> { 0, 1 })).Message);
        var one = new TmpfsDump { Mounts = [new TmpfsMount { Path = "/dev" }] };
        Assert.Contains("tmpfs-0.tar is missing", Assert.Throws<InvalidDataException>(() => TmpfsContent.Validate(one, new HashSet<int>())).Message);
        Assert.Contains("tmpfs-3.tar has no mount", Assert.Throws<InvalidDataException>(() => TmpfsContent.Validate(one, new HashSet<int> { 0, 3 })).Message);
        Assert.Same(one, TmpfsContent.Validate(one, new HashSet<int> { 0 }));
    }

    [Theory]
    [InlineData(TarEntryType.CharacterDevice, "sda")]
    [InlineData(TarEntryType.BlockDevice, "sda")]
    [InlineData(TarEntryType.HardLink, "passwd")]
    [InlineData(TarEntryType.RegularFile, "../escape")]
    [InlineData(TarEntryType.RegularFile, "/etc/passwd")]
    public void CheckTar_RefusesDevicesHardLinksAndPathsOutside(TarEntryType type, string name)
    {
        var tar = Path.Combine(_dir, "tmpfs-0.tar");
        using (var w = new TarWriter(File.Create(tar), TarEntryFormat.Pax, leaveOpen: false))
        {
            w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "ok") { DataStream = new MemoryStream("x"u8.ToArray()) });
            var bad = new PaxTarEntry(type, name);
            if (type == TarEntryType.HardLink) bad.LinkName = "/etc/passwd";
            w.WriteEntry(bad);
        }
        var e = Assert.Throws<InvalidDataException>(() => TmpfsContent.CheckTar(tar));
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void Plan_PutsEachSpecDeviceInTheTmpfsHoldingItsPath()
    {
        var dump = new TmpfsDump { Mounts = [new TmpfsMount { Path = "/dev", Options = "size=65536k" }, new TmpfsMount { Path = "/dev/shm" }] };
        var spec = new Spec
        {
            Linux = new Linux
            {
                Devices =
                [
                    new LinuxDevice { Path = "/dev/fuse", Type = "c", Major = 10, Minor = 229, FileMode = 0x1b6, Uid = 0, Gid = 0 },
                    new LinuxDevice { Path = "/dev/shm/odd", Type = "b", Major = 7, Minor = 0 },
                    new LinuxDevice { Path = "/opt/elsewhere", Type = "c", Major = 1, Minor = 3 },
                ],
            },
        };

        var plan = TmpfsContent.Plan(dump, "/src", "/bundle", spec);

        Assert.Equal(["/dev", "/dev/shm"], plan.Select(p => p.Path));
        Assert.Equal(("/bundle/restore-tmpfs/0", "size=65536k", "/src/tmpfs-0.tar"), (plan[0].Restore.Dir, plan[0].Restore.Options, plan[0].Restore.Tar));
        Assert.Equal(("/bundle/restore-tmpfs/1", "", "/src/tmpfs-1.tar"), (plan[1].Restore.Dir, plan[1].Restore.Options, plan[1].Restore.Tar));
        Assert.Equal([new TmpfsDevice("fuse", Libc.S_IFCHR | 0x1b6, Libc.Makedev(10, 229), 0, 0)], plan[0].Restore.Devices);
        Assert.Equal([new TmpfsDevice("odd", Libc.S_IFBLK | 0x1b6, Libc.Makedev(7, 0), null, null)], plan[1].Restore.Devices);
    }

    /// <summary>The pod's /dev/shm goes into the new pod's (no mount, no key of its own), only when
    /// the new spec binds exactly that; never into another bind source such as the host's.</summary>
    [Fact]
    public void Plan_PutsThePodsShmIntoTheNewPodsOnly()
    {
        var dump = new TmpfsDump { Mounts = [new TmpfsMount { Path = "/dev/shm", Pod = true }] };
        Spec WithShm(string source) => new() { Mounts = [new Mount { Destination = "/dev/shm", Type = "bind", Source = source, Options = ["rbind"] }] };

        var plan = Assert.Single(TmpfsContent.Plan(dump, "/src", "/bundle", WithShm("/pods/p/shm"), podShm: "/pods/p/shm"));
        Assert.Equal(new TmpfsRestore("/pods/p/shm", "", "/src/tmpfs-0.tar", plan.Restore.Devices, Pod: true), plan.Restore);
        Assert.Empty(TmpfsContent.Plan(dump, "/src", "/bundle", WithShm("/dev/shm"), podShm: null));
        Assert.Empty(TmpfsContent.Plan(dump, "/src", "/bundle", WithShm("/dev/shm"), podShm: "/pods/p/shm"));
    }

    [Fact]
    public void Mount_FillsThePodsShmOnlyWhileItIsEmpty_AndMountsNothingForIt()
    {
        var bundle = Path.Combine(_dir, "bundle");
        var shm = Path.Combine(_dir, "pod-shm");
        Directory.CreateDirectory(bundle);
        Directory.CreateDirectory(shm);
        var tar = WriteTar(new PaxTarEntry(TarEntryType.RegularFile, "segment") { DataStream = new MemoryStream("dumped"u8.ToArray()) });
        var plan = new List<TmpfsRestore> { new(shm, "", tar, [], Pod: true) };
        WritePlan(bundle, plan);
        var k = new RecordingHostKernel();

        using (TmpfsContent.Mount(k, bundle)) { }
        Assert.Equal("dumped", File.ReadAllText(Path.Combine(shm, "segment")));
        Assert.DoesNotContain(k.Calls, c => c.StartsWith("mount", StringComparison.Ordinal) || c.StartsWith("umount", StringComparison.Ordinal));

        // A sibling restored into the same pod later: its running neighbour's file is not replaced.
        File.WriteAllText(Path.Combine(shm, "segment"), "live");
        using (TmpfsContent.Mount(k, bundle)) { }
        Assert.Equal("live", File.ReadAllText(Path.Combine(shm, "segment")));
    }

    /// <summary>StartContainer's side: a fresh tmpfs with the captured options, private, filled
    /// from the tar, the spec's devices made in it; and unmounted when the restore is done.</summary>
    [Fact]
    public void Mount_MountsAPrivateTmpfsFillsItAndMakesTheDevices_AndDisposeDetachesIt()
    {
        var bundle = Path.Combine(_dir, "bundle");
        Directory.CreateDirectory(bundle);
        var tar = WriteTar(
            new PaxTarEntry(TarEntryType.Directory, "pts") { Mode = (UnixFileMode)0x1ed },
            new PaxTarEntry(TarEntryType.RegularFile, ".wh.not-a-whiteout") { DataStream = new MemoryStream("x"u8.ToArray()) });
        var dir = Path.Combine(bundle, TmpfsContent.RestoreDir, "0");
        var plan = new List<TmpfsRestore> { new(dir, "size=65536k,mode=755", tar, [new TmpfsDevice("fuse", Libc.S_IFCHR | 0x1b6, Libc.Makedev(10, 229), null, null)]) };
        WritePlan(bundle, plan);
        var k = new RecordingHostKernel();

        using (TmpfsContent.Mount(k, bundle))
        {
            Assert.Contains($"mount tmpfs {dir} tmpfs 0x0 size=65536k,mode=755", k.Calls);
            Assert.Contains($"mount none {dir} - 0x40000", k.Calls);
            Assert.Contains($"mknod {dir}/fuse 20666 {Libc.Makedev(10, 229)}", k.Calls);
            Assert.True(Directory.Exists(Path.Combine(dir, "pts")));
            Assert.True(File.Exists(Path.Combine(dir, ".wh.not-a-whiteout"))); // a tmpfs's file, not overlayfs' whiteout
            Assert.DoesNotContain(k.Calls, c => c.StartsWith("umount2", StringComparison.Ordinal));
        }
        Assert.Equal($"umount2 {dir} 2", k.Calls[^1]);
        Assert.True(k.Calls.IndexOf($"mount tmpfs {dir} tmpfs 0x0 size=65536k,mode=755") < k.Calls.IndexOf($"mount none {dir} - 0x40000"));
    }

    /// <summary>The archive's content decides what the fresh tmpfs holds, the new spec which devices:
    /// a symlink the content put where a device's parent goes is never written through.</summary>
    [Fact]
    public void Mount_NeverMakesASpecDeviceThroughASymlinkTheArchivesContentPlanted()
    {
        var bundle = Path.Combine(_dir, "bundle");
        var outside = Path.Combine(_dir, "outside");
        Directory.CreateDirectory(bundle);
        Directory.CreateDirectory(outside);
        var tar = WriteTar(new PaxTarEntry(TarEntryType.SymbolicLink, "net") { LinkName = outside });
        var dir = Path.Combine(bundle, TmpfsContent.RestoreDir, "0");
        var plan = new List<TmpfsRestore> { new(dir, "", tar, [new TmpfsDevice("net/tun", Libc.S_IFCHR | 0x1b6, Libc.Makedev(10, 200), null, null)]) };
        WritePlan(bundle, plan);
        var k = new RecordingHostKernel();

        var e = Assert.Throws<InvalidDataException>(() => TmpfsContent.Mount(k, bundle));

        Assert.Contains("net", e.Message);
        Assert.Contains("symlink", e.Message);
        Assert.DoesNotContain(k.Calls, c => c.StartsWith("mknod", StringComparison.Ordinal));
        Assert.Empty(Directory.GetFileSystemEntries(outside));
        Assert.Equal($"umount2 {dir} 2", k.Calls[^1]);
    }

    [Fact]
    public void Mount_WithoutAPlan_DoesNothing_AndAFailureUnmountsWhatItMounted()
    {
        var k = new RecordingHostKernel();
        using (TmpfsContent.Mount(k, _dir)) { }
        Assert.Empty(k.Calls);

        var bundle = Path.Combine(_dir, "b");
        Directory.CreateDirectory(bundle);
        var dir = Path.Combine(bundle, TmpfsContent.RestoreDir, "0");
        var plan = new List<TmpfsRestore> { new(dir, "", Path.Combine(_dir, "missing.tar"), []) };
        WritePlan(bundle, plan);
        Assert.Throws<FileNotFoundException>(() => TmpfsContent.Mount(k, bundle));
        Assert.Equal($"umount2 {dir} 2", k.Calls[^1]);
    }
}
