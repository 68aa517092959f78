using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>Whether a shim still runs when its /proc/PID/cmdline reads empty: the supervisor and
/// the monitor exec each other (same pid), and inside execve cmdline is "" for a moment. Read as
/// "dead", a shim in that moment made the daemon record its container as exited (or kill its
/// cgroup) while it ran on; a zombie or a kernel thread at that pid is still not a shim.</summary>
public sealed class ShimAliveTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("shimalive-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Theory]
    [InlineData("19618 (criruntime-shim) R 19575 19575 11601 0 -1 4194304 130 0 0 0 0 0 0 0 20 0 1 0 1293437", true)]
    [InlineData("19618 (a (b) c) S 1 1 1 0 -1 4194560 130 0 0 0 0 0 0 0 20 0 1 0 1293437", true)]
    [InlineData("19618 (criruntime-shim) Z 19575 19575 11601 0 -1 4194308 130 0 0 0 0 0 0 0 20 0 1 0 1293437", false)]
    [InlineData("19618 (criruntime-shim) X 19575 19575 11601 0 -1 4194308 130 0 0 0 0 0 0 0 20 0 1 0 1293437", false)]
    [InlineData("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 4 0 0 20 0 1 0 20", false)]
    [InlineData("garbage", false)]
    public void EmptyCmdline_IsALiveShimOnlyForALiveUserProcess(string stat, bool alive) =>
        Assert.Equal(alive, ShimClient.IsLiveUserProcess(stat));

    [Fact]
    public void AShimPidNamingThisProcess_WithAnotherCmdline_IsNotAShim()
    {
        // This test process: alive, not a shim for this state dir (its cmdline is not empty).
        File.WriteAllText(Path.Combine(_dir.FullName, StateFiles.ShimPid), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.False(ShimClient.IsShimAlive(_dir.FullName));
    }
}
