using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Shim;

public class TerminalPlanTests
{
    /// <summary>runc's order: the pty comes from the container's own /dev/ptmx (its devpts
    /// instance), the peer is opened through the master (no path lookup), becomes the controlling
    /// terminal and stdio, and the master leaves for the supervisor.</summary>
    [Fact]
    public void Terminal_IsMadeInTheContainersDevpts_AndTheMasterIsSentToTheSupervisor()
    {
        var k = new RecordingKernel();
        Terminal.Setup(k, new FdHandle(-1));
        Assert.Equal(
        [
            $"open /dev/ptmx {Libc.O_RDWR | Libc.O_NOCTTY}",
            "ioctl TIOCSPTLCK 0; ioctl TIOCGPTPEER O_RDWR|O_NOCTTY",
            "setsid; ioctl TIOCSCTTY",
            "dup2 peer 0",
            "dup2 peer 1",
            "dup2 peer 2",
            "sendmsg \"pty\" SCM_RIGHTS 1",
        ], k.Calls);
    }

    [Fact]
    public void NoPty_IsSent_WhenTheDevptsHasNone()
    {
        var k = new RecordingKernel();
        k.Failures["open /dev/ptmx"] = 2; // ENOENT
        var e = Assert.Throws<KernelException>(() => Terminal.Setup(k, new FdHandle(-1)));
        Assert.Equal(2, e.Errno);
        Assert.DoesNotContain(k.Calls, c => c.StartsWith("sendmsg", StringComparison.Ordinal));
    }
}
