using CriRuntime.Interop;
using CriRuntime.PartitionView;
using CriRuntime.Tests.Unit.Kernel;

namespace CriRuntime.Tests.Unit.PartitionView;

/// <summary>Putting a new lxcfs's files into a running container: clones made on the host first,
/// then the container's mount namespace and root joined on a thread of its own, then each stale
/// mount detached and the clone attached in its place.</summary>
public class ProcViewRemountTests
{
    [Fact]
    public void ClonesOnTheHost_ThenJoinsTheContainer_ThenReplacesEachFile()
    {
        var k = new RecordingHostKernel();

        ProcViewRemount.Into(4711, "/run/criruntime/lxcfs", ["proc/meminfo", "sys/devices/system/cpu/online"], k);

        Assert.Equal(
        [
            "open_tree /run/criruntime/lxcfs/proc/meminfo clone", "mount_setattr /run/criruntime/lxcfs/proc/meminfo 0xf",
            "open_tree /run/criruntime/lxcfs/sys/devices/system/cpu/online clone", "mount_setattr /run/criruntime/lxcfs/sys/devices/system/cpu/online 0xf",
            "open /proc/4711/root",
            $"unshare 0x{Libc.CLONE_FS:x}",
            $"setns /proc/4711/ns/mnt 0x{Libc.CLONE_NEWNS:x}",
            "chroot /proc/4711/root",
            "umount2 /proc/meminfo 2", "move_mount tree /proc/meminfo",
            "umount2 /sys/devices/system/cpu/online 2", "move_mount tree /sys/devices/system/cpu/online",
        ], k.Calls);
    }

    [Fact]
    public void AFileWithNothingMountedThere_IsStillGivenItsClone()
    {
        var k = new RecordingHostKernel();
        k.Failures["umount2 /proc/uptime"] = Errno.EINVAL;

        ProcViewRemount.Into(4711, "/l", ["proc/uptime"], k);

        Assert.Contains("move_mount tree /proc/uptime", k.Calls);
    }

    [Fact]
    public void AStepThatFails_IsThrownNamingIt_AndNothingAfterItRuns()
    {
        var k = new RecordingHostKernel();
        k.Failures["setns"] = Errno.EPERM;

        var e = Assert.Throws<KernelException>(() => ProcViewRemount.Into(4711, "/l", ["proc/uptime"], k));

        Assert.Contains("/proc/4711/ns/mnt", e.Message);
        Assert.DoesNotContain(k.Calls, c => c.StartsWith("move_mount", StringComparison.Ordinal));
    }
}
