using System.Diagnostics;
using CriRuntime.Checkpoint;
using CriRuntime.Config;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>Running criu with a deadline, through a stand-in: a sh script. Found here with the real
/// criu 4.2.1: killed 70 ms into a dump, one of its kernel-probe children was left stopped for good
/// (state T, reparented), holding criu's output pipes; the daemon then waited for the end of that
/// output forever and CheckpointPod with a short timeout never answered.</summary>
public sealed class CriuRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("criu-run-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string FakeCriu(string body)
    {
        var path = Path.Combine(_dir, "criu");
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    [Fact]
    public async Task ATimeout_KillsCriuAndAChildItLeftStopped_AndAnswersWithoutWaitingForThePipesItHeld()
    {
        var pidFile = Path.Combine(_dir, "child.pid");
        // A grandchild whose parent exits at once: reparented, it is no longer below criu in the
        // process tree (as a child forked after the kill listed criu's; the kill cannot find it
        // there), stops itself and keeps stdout and stderr: what criu's probe child did.
        var criu = FakeCriu($$"""
            echo starting
            ( sh -c 'echo $$ > {{pidFile}}.tmp; mv {{pidFile}}.tmp {{pidFile}}; kill -STOP $$; exec sleep 600' & )
            while [ ! -e {{pidFile}} ]; do :; done
            sleep 600
            """);
        var run = new Criu(new CheckpointSection { CriuEnv = [] });

        var sw = Stopwatch.StartNew();
        var result = await run.RunAsync(criu, ["dump"], TimeSpan.FromMilliseconds(500), _dir, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.True(result.TimedOut);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");
        var child = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(await GoneAsync(child), $"criu's stopped child {child} outlived the timeout");
    }

    [Fact]
    public async Task AnExitWithinTheTimeout_ReturnsItsStatusAndOutput()
    {
        var criu = FakeCriu("echo out; echo err >&2; exit 3");
        var result = await new Criu(new CheckpointSection { CriuEnv = ["A=b"] }).RunAsync(criu, ["check"], TimeSpan.FromSeconds(30), null, CancellationToken.None);

        Assert.False(result.TimedOut);
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("out", result.Output, StringComparison.Ordinal);
        Assert.Contains("err", result.Output, StringComparison.Ordinal);
    }

    /// <summary>Exited (a zombie or reaped), waited for on a pidfd.</summary>
    private static Task<bool> GoneAsync(int pid) => Task.Run(() =>
    {
        using var pidfd = CriRuntime.Interop.Libc.PidfdOpen(pid);
        return pidfd is null || CriRuntime.Interop.Libc.PidfdWaitExit(pidfd, TimeSpan.FromSeconds(10));
    });
}
