using CriRuntime.Oci;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Shim;

public class RootfsPlanTests
{
    private const string Root = "/b/rootfs";

    private static Spec Spec(params Mount[] mounts) => new()
    {
        Root = new Root { Path = Root, Readonly = true },
        Hostname = "h1",
        Mounts = mounts,
        Linux = new Linux
        {
            Namespaces = [new() { Type = "mount" }, new() { Type = "uts" }, new() { Type = "pid" }],
            MaskedPaths = ["/proc/kcore", "/proc/acpi", "/proc/missing"],
            ReadonlyPaths = ["/proc/sys"],
            Sysctl = new Dictionary<string, string> { ["net.ipv4.ip_forward"] = "1" },
        },
    };

    private static readonly Mount Proc = new() { Destination = "/proc", Type = "proc", Source = "proc", Options = ["nosuid", "noexec", "nodev"] };
    private static readonly Mount Dev = new() { Destination = "/dev", Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "strictatime", "mode=755", "size=65536k"] };

    private static List<string> Plan(Spec spec) => RootfsPlan.Build(spec, Root).Select(s => s.ToString()!).ToList();

    [Fact]
    public void UserNamespace_AttachesTheIdmappedRootfs_AndBindsFromClones_WithoutTouchingTheSources()
    {
        using var delegated = new DelegatedMounts { Root = new CriRuntime.Interop.FdHandle(-1) };
        delegated.Binds[1] = (new CriRuntime.Interop.FdHandle(-1), false);
        var hosts = new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/private/pod/hosts", Options = ["rbind", "ro"] };
        var steps = RootfsPlan.Build(Spec(Proc, hosts), UserNamespaces.InitRootfs, delegated);
        var plan = steps.Select(s => s.ToString()!).ToList();
        Assert.Equal("mount none / - rec|slave", plan[0]);
        Assert.Equal("move_mount idmapped-rootfs .; fchdir", plan[1]); // not a bind of the rootfs onto itself
        Assert.Contains("move_mount /private/pod/hosts /proc/self/cwd/etc/hosts", plan);
        Assert.DoesNotContain(plan, l => l.StartsWith("mount /private/pod/hosts", StringComparison.Ordinal));
        Assert.Contains("mount none /proc/self/cwd/etc/hosts - ro|remount|bind", plan);

        // Run on the fake kernel, which has no /private/pod/hosts: the source is never looked at.
        var k = new CriRuntime.Shim.Kernel.RecordingKernel();
        k.Files["/proc/self/cwd/etc"] = CriRuntime.Shim.Kernel.FileKind.Directory;
        foreach (var step in steps.TakeWhile(s => s is not PivotRootStep)) step.Apply(k);
        Assert.Contains("move_mount tree .", k.Calls);
        Assert.Contains("fchdir tree", k.Calls);
        Assert.Contains("create /proc/self/cwd/etc/hosts 644", k.Calls);
        Assert.Contains("move_mount tree /proc/self/cwd/etc/hosts", k.Calls);
    }

    [Fact]
    public void Plan_MakesRootSlave_BindsRootfs_MountsInSpecOrder_ThenPivots()
    {
        var plan = Plan(Spec(Proc, Dev));
        Assert.Equal("mount none / - rec|slave", plan[0]);
        Assert.Equal($"mount {Root} {Root} - bind|rec", plan[1]);
        var proc = plan.IndexOf($"mount proc {Root}/proc proc nosuid|nodev|noexec");
        var dev = plan.IndexOf($"mount tmpfs {Root}/dev tmpfs nosuid|strictatime mode=755,size=65536k");
        var pivot = plan.IndexOf("pivot_root . . ; umount2 . MNT_DETACH");
        Assert.True(proc > 1 && dev > proc && pivot > dev, string.Join('\n', plan));
        Assert.Equal($"chdir {Root}", plan[pivot - 1]);
    }

    [Fact]
    public void Plan_AfterPivot_SetsHostname_Sysctls_ThenReadonly_Masks_AndReadonlyRoot()
    {
        var plan = Plan(Spec(Proc));
        var after = plan.SkipWhile(s => !s.StartsWith("pivot_root", StringComparison.Ordinal)).Skip(1).ToList();
        Assert.Equal(
        [
            "sethostname h1",
            "sysctl net.ipv4.ip_forward=1",
            "readonly /proc/sys",
            "mask /proc/kcore", "mask /proc/acpi", "mask /proc/missing",
            "mount none / - ro|remount|bind",
        ], after);
    }

    [Fact]
    public void Plan_WithDevTmpfs_BindsDefaultDevices_AndCreatesStdioSymlinks()
    {
        var plan = Plan(Spec(Dev));
        foreach (var d in new[] { "null", "zero", "full", "random", "urandom", "tty" })
            Assert.Contains($"mount /dev/{d} {Root}/dev/{d} - bind", plan);
        Assert.Contains($"symlink {Root}/dev/fd -> /proc/self/fd", plan);
        Assert.Contains($"symlink {Root}/dev/stdin -> /proc/self/fd/0", plan);
        Assert.Contains($"symlink {Root}/dev/stdout -> /proc/self/fd/1", plan);
        Assert.Contains($"symlink {Root}/dev/stderr -> /proc/self/fd/2", plan);
        Assert.Contains($"symlink {Root}/dev/ptmx -> pts/ptmx", plan);
    }

    [Fact]
    public void Plan_WithoutDevMount_LeavesTheImagesDevAlone()
    {
        Assert.DoesNotContain(Plan(Spec(Proc)), s => s.Contains("/dev/null", StringComparison.Ordinal) && s.StartsWith("mount /dev", StringComparison.Ordinal));
    }

    [Fact]
    public void BindMount_ReadOnly_IsABindThenARemount_WithPropagation_AndRecursiveReadOnly()
    {
        var m = new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/pods/p/hosts", Options = ["rbind", "ro", "rprivate", "rro"] };
        var plan = Plan(Spec(m));
        var i = plan.IndexOf($"bind-target /pods/p/hosts -> {Root}/etc/hosts");
        Assert.True(i > 0);
        Assert.Equal($"mount /pods/p/hosts {Root}/etc/hosts - bind|rec", plan[i + 1]);
        Assert.Equal($"mount none {Root}/etc/hosts - ro|remount|bind", plan[i + 2]);
        Assert.Equal($"mount none {Root}/etc/hosts - rec|private", plan[i + 3]);
        Assert.Equal($"mount_setattr {Root}/etc/hosts set=0x1 clr=0x0 recursive", plan[i + 4]);
    }

    [Theory]
    [InlineData("pods/p/hosts")]
    [InlineData("")]
    public void BindMount_WithARelativeOrNoSource_IsRefused_NamingTheMount(string source)
    {
        var m = new Mount { Destination = "/etc/hosts", Type = "bind", Source = source, Options = ["rbind"] };
        var e = Assert.Throws<InvalidDataException>(() => Plan(Spec(m)));
        Assert.StartsWith("mounts: source of the bind mount on /etc/hosts: ", e.Message);
    }

    [Fact]
    public void Destination_CannotClimbOutOfTheRootfs_Lexically()
    {
        var m = new Mount { Destination = "/../../etc/evil", Type = "tmpfs", Source = "tmpfs" };
        Assert.Contains($"mount tmpfs {Root}/etc/evil tmpfs 0", Plan(Spec(m)));
    }

    [Fact]
    public void Execute_OnRecordingKernel_CreatesFileTargetsForFileSources_AndMasksByKind()
    {
        var k = new RecordingKernel();
        k.Files["/b"] = FileKind.Directory;
        k.Files[Root] = FileKind.Directory;
        k.Files["/pods/p/hosts"] = FileKind.File;
        k.Files["/proc/kcore"] = FileKind.File;
        k.Files["/proc/acpi"] = FileKind.Directory;
        k.Files["/proc/sys"] = FileKind.Directory;
        var m = new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/pods/p/hosts", Options = ["rbind", "ro"] };
        foreach (var step in RootfsPlan.Build(Spec(m), Root)) step.Apply(k);

        Assert.Contains($"mkdir {Root}/etc 755", k.Calls);
        Assert.Contains($"create {Root}/etc/hosts 644", k.Calls);
        Assert.Equal(
        [
            "pivot_root . .", "mount none . - rec|slave", "umount2 . 2", "chdir /",
            "sethostname h1",
            "write /proc/sys/net/ipv4/ip_forward 1",
            "mount /proc/sys /proc/sys - bind|rec",
            "mount none /proc/sys - ro|nosuid|nodev|noexec|remount|bind",
            "mount /dev/null /proc/kcore - bind",
            "mount tmpfs /proc/acpi tmpfs ro",
            "mount none / - ro|remount|bind",
        ], k.Calls.SkipWhile(c => !c.StartsWith("pivot_root", StringComparison.Ordinal)));
    }

    [Fact]
    public void Devices_AreCreatedWithMknod_WithTheirModeAndOwner()
    {
        var spec = Spec(Dev) with
        {
            Linux = Spec(Dev).Linux! with { Devices = [new LinuxDevice { Type = "c", Path = "/dev/fuse", Major = 10, Minor = 229, FileMode = 438, Uid = 1, Gid = 2 }] },
        };
        var k = new RecordingKernel();
        foreach (var step in RootfsPlan.Build(spec, Root).OfType<MknodStep>()) step.Apply(k);
        Assert.Equal([$"mknod {Root}/dev/fuse 20666 {CriRuntime.Interop.Libc.Makedev(10, 229)}", $"chown {Root}/dev/fuse 1:2"], k.Calls);
    }

    [Fact]
    public void MountOptions_SplitFlagsPropagationAndData()
    {
        var o = MountOptions.Parse(["nosuid", "rw", "ro", "mode=0620", "gid=5", "newinstance", "rshared", "rnoexec"]);
        Assert.Equal("ro|nosuid", MountFlags.Format(o.Flags));
        Assert.Equal("rec|shared", MountFlags.Format(o.Propagation));
        Assert.Equal(CriRuntime.Shim.Kernel.Abi.MOUNT_ATTR_NOEXEC, o.RecursiveSet);
        Assert.Equal("mode=0620,gid=5,newinstance", o.Data);
    }

    [Fact]
    public void WithoutMountNamespace_NothingIsMounted()
    {
        var spec = Spec(Proc) with { Linux = new Linux { Namespaces = [new() { Type = "pid" }] } };
        Assert.Empty(RootfsPlan.Build(spec, Root));
    }
}

public class SecurePathTests
{
    private const string Root = "/b/rootfs";

    [Fact]
    public void AbsoluteSymlinkInTheImage_ResolvesInsideTheRootfs_NotOnTheHost()
    {
        var k = new RecordingKernel();
        k.Links[$"{Root}/etc"] = "/host-etc";
        Assert.Equal($"{Root}/host-etc/hosts", SecurePath.Resolve(k, Root, "/etc/hosts"));
    }

    [Fact]
    public void RelativeSymlinkWithDotDots_StopsAtTheRootfs()
    {
        var k = new RecordingKernel();
        k.Links[$"{Root}/data"] = "../../../../var/lib";
        Assert.Equal($"{Root}/var/lib/x", SecurePath.Resolve(k, Root, "/data/x"));
    }

    [Fact]
    public void ChainedSymlinks_AreFollowed_AndLoopsFail()
    {
        var k = new RecordingKernel();
        k.Links[$"{Root}/a"] = "b";
        k.Links[$"{Root}/b"] = "/c";
        Assert.Equal($"{Root}/c/f", SecurePath.Resolve(k, Root, "/a/f"));
        k.Links[$"{Root}/loop"] = "/loop";
        Assert.Throws<KernelException>(() => SecurePath.Resolve(k, Root, "/loop/x"));
    }

    [Fact]
    public void BindMountTarget_ThroughASymlinkedDirectory_LandsInTheRootfs()
    {
        var k = new RecordingKernel();
        k.Files["/pods/hosts"] = FileKind.File;
        k.Files[$"{Root}/host-etc"] = FileKind.Directory;
        k.Links[$"{Root}/etc"] = "/host-etc";
        var spec = new Spec
        {
            Root = new Root { Path = Root },
            Mounts = [new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/pods/hosts", Options = ["rbind"] }],
            Linux = new Linux { Namespaces = [new() { Type = "mount" }] },
        };
        foreach (var step in RootfsPlan.Build(spec, Root)) step.Apply(k);
        Assert.Contains($"mount /pods/hosts {Root}/host-etc/hosts - bind|rec", k.Calls);
        Assert.DoesNotContain(k.Calls, c => c.Contains(" /host-etc", StringComparison.Ordinal));
    }
}
