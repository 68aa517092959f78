using System.Diagnostics;
using CriRuntime.Checkpoint;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>The post-dump hook through a stand-in for CRIU: a sh script that runs the action script
/// the way cr-dump.c does (CRTOOLS_SCRIPT_ACTION in the environment, the exit status read), then
/// does what a resumed container would (writes to its layer), then exits with the script's status.</summary>
public sealed class PostDumpHookTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("postdump-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Layer => Path.Combine(_dir, "upper.txt");

    /// <summary>A fake criu: runs "$1" at each action named after it, then writes "resumed" into
    /// the layer, and exits with the post-dump script's status.</summary>
    private static async Task<int> FakeCriuAsync(string script, string layer, params string[] actions)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("""
            script=$1; layer=$2; shift 2; status=0
            for action in "$@"; do CRTOOLS_SCRIPT_ACTION=$action "$script" || status=$?; done
            echo resumed > "$layer"
            exit $status
            """);
        psi.ArgumentList.Add("fake-criu");
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(layer);
        foreach (var a in actions) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        await p.WaitForExitAsync();
        return p.ExitCode;
    }

    [Fact]
    public async Task TheCapture_RunsAtPostDump_BeforeCriuResumesTheTasks()
    {
        File.WriteAllText(Layer, "frozen\n");
        string? captured = null;
        using var hook = PostDumpHook.Start(_dir, () => captured = File.ReadAllText(Layer));

        var exit = await FakeCriuAsync(hook.ScriptPath, Layer, "pre-dump", "network-lock", "post-dump");

        Assert.Equal(0, exit);
        Assert.True(hook.Finish());
        Assert.Equal("frozen\n", captured);
        Assert.Equal("resumed\n", File.ReadAllText(Layer));
    }

    [Fact]
    public async Task ACaptureThatFails_MakesTheScriptFail_SoCriuFailsTheDump_AndFinishRethrowsIt()
    {
        using var hook = PostDumpHook.Start(_dir, () => throw new IOException("disk gone"));

        var exit = await FakeCriuAsync(hook.ScriptPath, Layer, "post-dump");

        Assert.NotEqual(0, exit);
        var e = Assert.Throws<IOException>(() => hook.Finish());
        Assert.Equal("disk gone", e.Message);
    }

    [Fact]
    public async Task ACriuThatNeverReachesPostDump_LeavesNothingWaiting_AndTheCaptureNeverRuns()
    {
        var ran = false;
        using var hook = PostDumpHook.Start(_dir, () => ran = true);

        var exit = await FakeCriuAsync(hook.ScriptPath, Layer, "pre-dump");

        Assert.Equal(0, exit);
        Assert.False(hook.Finish());
        Assert.False(ran);
    }

    [Fact]
    public async Task AtPreDump_CriuWaitsForTheGate_ThenGoesOn()
    {
        File.WriteAllText(Layer, "frozen\n");
        var gate = new PodCheckpointer.DumpGate();
        using var hook = PostDumpHook.Start(_dir, () => { }, gate: gate);

        var criu = FakeCriuAsync(hook.ScriptPath, Layer, "pre-dump", "post-dump");
        await gate.Arrived.WaitAsync(TimeSpan.FromSeconds(30));
        // CRIU is held at pre-dump: it has not gone on to resume anything.
        Assert.False(criu.IsCompleted);
        Assert.Equal("frozen\n", File.ReadAllText(Layer));
        gate.Open();

        Assert.Equal(0, await criu.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(hook.Finish());
        Assert.Equal("resumed\n", File.ReadAllText(Layer));
    }

    [Fact]
    public async Task AtPreDump_ACancelledGate_FailsTheScript_SoCriuGivesUpBeforeSeizing()
    {
        var gate = new PodCheckpointer.DumpGate();
        var ran = false;
        using var hook = PostDumpHook.Start(_dir, () => ran = true, gate: gate);

        var criu = FakeCriuAsync(hook.ScriptPath, Layer, "pre-dump");
        await gate.Arrived.WaitAsync(TimeSpan.FromSeconds(30));
        gate.Cancel();

        Assert.NotEqual(0, await criu.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(hook.Finish());
        Assert.False(ran);
    }

    [Fact]
    public void TheScriptAndFifos_AreTheDaemonsAlone()
    {
        using var hook = PostDumpHook.Start(_dir, () => { });
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(hook.ScriptPath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dir, PostDumpHook.RequestFifo)));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dir, PostDumpHook.AnswerFifo)));
    }

    /// <summary>A dump of one container (no pod freeze to wait for) does not ask the daemon at
    /// pre-dump: no round trip before CRIU seizes the tasks.</summary>
    [Fact]
    public void OnlyADumpWithAGate_AsksAtPreDump()
    {
        using (var hook = PostDumpHook.Start(Directory.CreateDirectory(Path.Combine(_dir, "one")).FullName, () => { }))
            Assert.DoesNotContain("pre-dump)", File.ReadAllText(hook.ScriptPath));
        using (var hook = PostDumpHook.Start(Directory.CreateDirectory(Path.Combine(_dir, "pod")).FullName, () => { }, gate: new PodCheckpointer.DumpGate()))
            Assert.Contains("pre-dump) say=ready", File.ReadAllText(hook.ScriptPath));
    }

    /// <summary>A lazy dump: CRIU asks once more at status-ready (its page server listens, it has
    /// not accepted yet) and waits for the answer; the callback gets CRIU's pid (the script's parent).</summary>
    [Fact]
    public async Task ALazyDump_AtStatusReady_HandsTheDaemonCriusPid_BeforeCriuGoesOn()
    {
        var got = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var captured = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new ManualResetEventSlim();
        using var hook = PostDumpHook.Start(_dir, captured.SetResult, listening: pid => { got.SetResult(pid); release.Wait(TimeSpan.FromSeconds(30)); });

        var criu = FakeCriuAsync(hook.ScriptPath, Layer, "post-dump", "network-unlock", "status-ready");
        // As the lazy dump does: once post-dump was reached, the capture's answer, while CRIU goes on.
        await captured.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(hook.Finish());
        var pid = await got.Task.WaitAsync(TimeSpan.FromSeconds(30));
        // CRIU waits in the script until the daemon answers.
        Assert.False(criu.IsCompleted);
        // sh -c SCRIPT fake-criu ...: the process that ran the action script.
        Assert.Contains("fake-criu", File.ReadAllText($"/proc/{pid}/cmdline").Split('\0'));
        release.Set();
        Assert.Equal(0, await criu.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task ACallbackThatFails_AtStatusReady_DoesNotFailCriu()
    {
        using var hook = PostDumpHook.Start(_dir, () => { }, listening: _ => throw new IOException("no such socket"));

        Assert.Equal(0, await FakeCriuAsync(hook.ScriptPath, Layer, "post-dump", "status-ready").WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(hook.Finish());
    }

    /// <summary>A lazy CRIU that ends before status-ready: disposing the hook stops its wait.</summary>
    [Fact]
    public async Task ALazyCriuThatEndsBeforeStatusReady_LeavesNothingWaiting()
    {
        var called = false;
        var hook = PostDumpHook.Start(_dir, () => { }, listening: _ => called = true);
        Assert.Equal(0, await FakeCriuAsync(hook.ScriptPath, Layer, "post-dump").WaitAsync(TimeSpan.FromSeconds(30)));
        // CRIU has exited; the hook still waits for status-ready.
        Assert.True(hook.Finish());
        var disposed = Task.Run(hook.Dispose);
        await disposed.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(called);
    }

    [Fact]
    public void OnlyALazyDump_AsksAtStatusReady()
    {
        using (var hook = PostDumpHook.Start(Directory.CreateDirectory(Path.Combine(_dir, "plain")).FullName, () => { }))
            Assert.DoesNotContain("status-ready)", File.ReadAllText(hook.ScriptPath));
        using (var hook = PostDumpHook.Start(Directory.CreateDirectory(Path.Combine(_dir, "lazy")).FullName, () => { }, listening: _ => { }))
            Assert.Contains("status-ready) say=\"listening $PPID\"", File.ReadAllText(hook.ScriptPath));
    }

    /// <summary>A lazy dump calls Finish as soon as the capture has started (its post-dump answer is
    /// what it waits for), possibly before the hook marked the capture as run: that must not cancel
    /// the wait for status-ready, or CRIU would wait in its script for an answer that never comes.</summary>
    [Fact]
    public async Task FinishCalledWhileTheCaptureRuns_StillAnswersStatusReady()
    {
        var started = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        var listened = false;
        using var hook = PostDumpHook.Start(_dir, () => { started.Set(); release.Wait(TimeSpan.FromSeconds(30)); }, listening: _ => listened = true);

        var criu = FakeCriuAsync(hook.ScriptPath, Layer, "post-dump", "status-ready");
        Assert.True(started.Wait(TimeSpan.FromSeconds(30)));
        var finishing = new Thread(() => hook.Finish()) { IsBackground = true };
        finishing.Start();
        // Finish has decided whether to cancel and waits for the capture's end.
        Assert.True(SpinWait.SpinUntil(() => (finishing.ThreadState & System.Threading.ThreadState.WaitSleepJoin) != 0, TimeSpan.FromSeconds(30)));
        release.Set();

        Assert.Equal(0, await criu.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(finishing.Join(TimeSpan.FromSeconds(30)));
        Assert.True(listened);
    }
}
