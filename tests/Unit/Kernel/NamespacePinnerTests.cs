using CriRuntime.Interop;
using CriRuntime.Namespaces;
using CriRuntime.Kernel;

namespace CriRuntime.Tests.Unit.Kernel;

/// <summary>Pinning namespaces with bind mounts, against the recording kernel (no root).</summary>
public sealed class NamespacePinnerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("criruntime-ns-").FullName;
    private readonly RecordingHostKernel _k = new();
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void Pin_UnsharesRunsInsideThenBindMountsTheThreadsNamespace()
    {
        var path = P("ns/net");
        NamespacePinner.Pin(NamespaceKind.Net, path, () => _k.Sethostname("inside"), _k);

        Assert.Equal(["unshare 0x40000000", "sethostname inside", $"mount /proc/self/task/4242/ns/net {path} - 0x1000"], _k.Calls);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void IsPinned_WhenANamespaceFileIsMountedThere_AndNotForAPlainFileOrNothing()
    {
        _k.FileSystems[P("net")] = new FsUsage(FsUsage.NsfsMagic, 0, 0, 0, 0);
        _k.FileSystems[P("unmounted")] = new FsUsage(FsUsage.Ext4Magic, 1 << 30, 1 << 29, 1000, 500);

        Assert.True(NamespacePinner.IsPinned(P("net"), _k));
        Assert.False(NamespacePinner.IsPinned(P("unmounted"), _k));
        Assert.False(NamespacePinner.IsPinned(P("gone"), _k));
    }

    [Fact]
    public void IsPinned_OnThisHost_SeesOurOwnNetworkNamespace_AndNotAPlainFile()
    {
        // /proc/self/ns/net is an nsfs file, as a mounted pin is; the temp file is not.
        Assert.True(NamespacePinner.IsPinned("/proc/self/ns/net"));
        File.WriteAllText(P("plain"), "");
        Assert.False(NamespacePinner.IsPinned(P("plain")));
    }

    [Fact]
    public void Pin_OfAPidNamespace_PinsPidForChildren()
    {
        NamespacePinner.Pin(NamespaceKind.Pid, P("pid"), kernel: _k);
        Assert.Equal(["unshare 0x20000000", $"mount /proc/self/task/4242/ns/pid_for_children {P("pid")} - 0x1000"], _k.Calls);
    }

    [Fact]
    public void Pin_LeavesNothing_WhenTheBindMountFails()
    {
        var path = P("ipc");
        _k.Failures["mount"] = Errno.EPERM;

        var e = Assert.Throws<KernelException>(() => NamespacePinner.Pin(NamespaceKind.Ipc, path, kernel: _k));

        Assert.Equal(Errno.EPERM, e.Errno);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void PinExisting_LeavesNothing_WhenTheBindMountFails()
    {
        _k.Failures["mount"] = Errno.ENOENT;
        Assert.Throws<KernelException>(() => NamespacePinner.PinExisting("/proc/1/ns/pid", P("pid"), _k));
        Assert.False(File.Exists(P("pid")));
    }

    [Fact]
    public void RunIn_JoinsTheNamespaceOnTheThreadThatRunsTheAction()
    {
        var ran = false;
        NamespacePinner.RunIn(NamespaceKind.Uts, "/run/pod/ns/uts", () => ran = true, _k);
        Assert.True(ran);
        Assert.Equal(["setns /run/pod/ns/uts 0x4000000"], _k.Calls);
    }

    [Fact]
    public void Unpin_DetachesAndRemovesThePin_AndIsIdempotent()
    {
        var path = P("uts");
        File.WriteAllText(path, "");

        NamespacePinner.Unpin(path, _k);
        NamespacePinner.Unpin(path, _k); // gone: nothing to do

        Assert.Equal([$"umount2 {path} 2"], _k.Calls);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Unpin_RemovesAPinThatIsNoLongerMounted()
    {
        var path = P("net");
        File.WriteAllText(path, "");
        _k.Failures["umount2"] = Errno.EINVAL;

        NamespacePinner.Unpin(path, _k);

        Assert.False(File.Exists(path));
    }
}
