using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>The idle shim is `criruntime-monitor` (C), exec'd by the .NET supervisor in the same
/// process; a request the monitor does not serve goes back to .NET (an exec of `criruntime-shim
/// supervise --resume`), which goes back to the monitor once idle (docs/shim-protocol.md, "The
/// monitor"). The process, its pid and the container's log are the same throughout.</summary>
[Collection(RegistryCollection.Name)]
public class ShimMonitorTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    internal static string Exe(int pid) => Path.GetFileName(new FileInfo($"/proc/{pid}/exe").LinkTarget ?? "");

    /// <summary>The handover back happens when the last connection of the request is closed,
    /// after the client has its answer: asked until seen, with a deadline.</summary>
    internal static async Task WaitForMonitorAsync(int pid)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (Exe(pid) != "criruntime-monitor")
        {
            Assert.True(DateTime.UtcNow < deadline, $"shim {pid} is still {Exe(pid)}");
            await Task.Delay(20);
        }
    }

    /// <summary>How many times the .NET supervisor handed the shim to the monitor (its shim.log line).</summary>
    private static int Handovers(DaemonProcess d, string id) =>
        File.ReadAllLines(Path.Combine(d.State, "c", id[..20], "shim.log")).Count(l => l.Contains("idle, the monitor takes over", StringComparison.Ordinal));

    /// <summary>ExecSync is served by the monitor itself (no .NET in between); an update goes to
    /// .NET and back. Both while the container writes: every line is logged once, whole, in order.</summary>
    [Fact]
    public async Task ExecSync_IsServedByTheMonitor_AnUpdateByDotNetAndBack_AndTheLogHasEveryLineOnce()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var logDir = Path.Combine(d.Dir, "logs");
        var pod = PodConfig("monitor", logDir);
        var podId = await c.RunPodAsync(pod);
        // Writes while the shim goes back and forth between the monitor and .NET: every line must
        // be logged once, whole, in order, whichever of them read it.
        const int Lines = 400;
        var id = await c.StartNewAsync(podId, pod, Container("talker", image, "sh", "-c",
            $"i=0; while [ $i -lt {Lines} ]; do echo line-$i-$(head -c 300 /dev/zero | tr '\\0' x); i=$((i+1)); usleep 5000; done; echo done; exec sleep 3600"));
        var shimPid = d.ShimPid(id);
        await WaitForMonitorAsync(shimPid);

        for (var i = 0; i < 5; i++)
        {
            var handovers = Handovers(d, id);
            var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "echo", $"exec-{i}" }, Timeout = 30 });
            Assert.Equal($"exec-{i}\n", r.Stdout.ToStringUtf8());
            Assert.Equal(0, r.ExitCode);
            Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
            Assert.Equal("criruntime-monitor", Exe(shimPid));
            Assert.Equal(handovers, Handovers(d, id)); // never went back to .NET

            await c.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest { ContainerId = id, Linux = new LinuxContainerResources { CpuShares = 512 + i } });
            await WaitForMonitorAsync(shimPid);
            Assert.Equal(handovers + 1, Handovers(d, id));
        }
        var log = Path.Combine(logDir, "talker.log");
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!LogText(log).Contains("done\n"))
        {
            Assert.True(DateTime.UtcNow < deadline, "the container never wrote its last line");
            await Task.Delay(50);
        }
        var records = File.ReadAllLines(log).Select(l => l.Split(' ', 4)).ToList();
        Assert.All(records, r => Assert.Equal("F", r[2]));
        var expected = Enumerable.Range(0, Lines).Select(i => $"line-{i}-{new string('x', 300)}").Append("done");
        Assert.Equal(expected, records.Select(r => r[3]));
        Assert.Equal(shimPid, d.ShimPid(id));

        // The exit goes through .NET too: recorded as ever.
        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 1 });
        var exited = await c.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerExited, exited.State);
        Assert.Equal(137, exited.ExitCode); // sleep as pid 1 ignores SIGTERM: killed after the timeout
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    /// <summary>A resumed shim going back to the monitor leaves an exit that comes between its
    /// last check and the exec to whoever comes next. Its reaper is another thread than the one
    /// that execs: it used to reap the init in that gap, the status died with the old image, and
    /// the monitor handed back an exit nobody could reap (the resumed shim then waited for ever,
    /// later recorded 255). The shim's fault point holds the handover 2 s after the check; the
    /// container exits then, and its own exit code is recorded.</summary>
    [Fact]
    public async Task AnExitAsTheResumedShimGoesBackToTheMonitor_IsRecordedWithItsOwnCode()
    {
        await using var node = await TestNode.StartAsync(_registry, d => d.Environment["CRIRUNTIME_SHIM_FAULT"] = "resumed-handover-delay");
        var (podId, pod) = await node.RunPodAsync("late-exit");
        var id = await node.C.StartNewAsync(podId, pod, Container("waiter", node.Busybox, "sh", "-c", "while [ ! -e /tmp/go ]; do usleep 20000; done; exit 3"));
        var (shimPid, initPid) = node.D.ContainerPids(id);
        await WaitForMonitorAsync(shimPid);
        var shimLog = Path.Combine(node.D.State, "c", id[..20], "shim.log");

        // An update goes to .NET; answered, .NET goes back to the monitor, held at the fault point.
        await node.C.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest { ContainerId = id, Linux = new LinuxContainerResources { CpuShares = 512 } });
        await ProcState.Eventually(() => File.ReadAllText(shimLog).Contains("fault point resumed-handover-delay", StringComparison.Ordinal),
            "the resumed shim held between its check and the exec", TimeSpan.FromSeconds(30));
        File.WriteAllText($"/proc/{initPid}/root/tmp/go", "");

        var exited = await node.C.WaitExitedAsync(id);
        var log = File.ReadAllText(shimLog);
        Assert.True(exited.ExitCode == 3, $"exit code {exited.ExitCode} ({exited.Reason}: {exited.Message}); shim log: {log}");
        Assert.DoesNotContain("the reaper had not reported it", log, StringComparison.Ordinal);
    }

    /// <summary>PR_SET_PDEATHSIG is the process's, which the exec kept: SIGKILL of the monitor
    /// kills the container, and the daemon records the exit status it cannot know as 255.</summary>
    [Fact]
    public async Task MonitorKill9_KillsTheContainer_AndTheDaemonRecords255()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("monitor-kill");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        var (shimPid, containerPid) = d.ContainerPids(id);
        await WaitForMonitorAsync(shimPid);

        using (var monitor = Process.GetProcessById(shimPid))
        {
            monitor.Kill();
            monitor.WaitForExit();
        }
        var status = await c.WaitExitedAsync(id);
        Assert.Equal(255, status.ExitCode);
        Assert.Equal("Error", status.Reason);
        Assert.Contains("shim", status.Message, StringComparison.Ordinal);
        Assert.False(ProcState.IsRunning(containerPid), $"container process {containerPid} outlived its monitor");
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    /// <summary>A daemon killed and restarted finds the monitor a live shim (its command line says
    /// `supervise` and the state dir), and stops the container through it.</summary>
    [Fact]
    public async Task DaemonRestart_FindsTheMonitorAlive_AndStopsTheContainerThroughIt()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("monitor-restart");
        string podId, id;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 1; done"));
        }
        var (shimPid, containerPid) = d.ContainerPids(id);
        await WaitForMonitorAsync(shimPid);
        await d.KillAsync();
        await d.StartAsync();

        using (var c = d.Client())
        {
            Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
            Assert.True(ProcState.IsRunning(containerPid));
            Assert.Equal("criruntime-monitor", Exe(shimPid));
            await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 30 });
            var exited = await c.StatusAsync(id);
            Assert.Equal(ContainerState.ContainerExited, exited.State);
            Assert.Equal(3, exited.ExitCode); // its TERM handler ran: the stop signal got there
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    /// <summary>What the monitor's exec keeps of the .NET one: the container's cgroup, namespaces
    /// and identity, the exit code and both streams, a signal as 128+n, a missing command as an
    /// error naming it, and the timeout: the command is killed and the call is DeadlineExceeded.</summary>
    [Fact]
    public async Task ExecSync_ServedByTheMonitor_KeepsCgroupNamespacesExitCodesAndTheTimeout()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("monexec");
        var podId = await c.RunPodAsync(pod);
        var config = Container("idle", image, "sleep", "3600");
        config.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 1234 };
        var id = await c.StartNewAsync(podId, pod, config);
        var (shimPid, initPid) = d.ContainerPids(id);
        await WaitForMonitorAsync(shimPid);
        var handovers = Handovers(d, id);
        // The baseline is the monitor once it has served an exec: right after its exec it has
        // touched only a few pages (CI read 8 kB), and the first exec's stack, heap and libc
        // state are not what a probe every few seconds adds.
        var warmUp = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "head -c 300000 /dev/zero" }, Timeout = 30 });
        Assert.Equal(300000, warmUp.Stdout.Length);
        var idleKb = ProcMemory.PrivateKb(shimPid);

        Assert.Equal("1234\n", await c.ExecOkAsync(id, "id", "-u"));
        Assert.Equal(await c.ExecOkAsync(id, "cat", "/proc/1/cgroup"), await c.ExecOkAsync(id, "cat", "/proc/self/cgroup")); // in the container's cgroup namespace
        foreach (var ns in new[] { "pid", "net", "ipc", "uts", "mnt", "cgroup" })
            Assert.Equal(new FileInfo($"/proc/{initPid}/ns/{ns}").LinkTarget, (await c.ExecOkAsync(id, "readlink", $"/proc/self/ns/{ns}")).Trim());
        Assert.Equal(File.ReadAllText($"/proc/{initPid}/status").Split('\n').Where(l => l.StartsWith("Cap", StringComparison.Ordinal) || l.StartsWith("Seccomp", StringComparison.Ordinal) || l.StartsWith("NoNewPrivs", StringComparison.Ordinal)),
            (await c.ExecOkAsync(id, "cat", "/proc/self/status")).Split('\n').Where(l => l.StartsWith("Cap", StringComparison.Ordinal) || l.StartsWith("Seccomp", StringComparison.Ordinal) || l.StartsWith("NoNewPrivs", StringComparison.Ordinal)));

        var big = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a; echo oops >&2; exit 3" }, Timeout = 30 });
        Assert.Equal(3, big.ExitCode);
        Assert.Equal(new string('a', 300000), big.Stdout.ToStringUtf8());
        Assert.Equal("oops\n", big.Stderr.ToStringUtf8());
        Assert.Equal(137, (await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "kill -9 $$" }, Timeout = 30 })).ExitCode);
        var missing = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "no-such-command" }, Timeout = 30 }).ResponseAsync);
        Assert.Contains("no-such-command", missing.Status.Detail);

        var started = Stopwatch.StartNew();
        var timedOut = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sleep", "300" }, Timeout = 1 }).ResponseAsync);
        Assert.Equal(Grpc.Core.StatusCode.DeadlineExceeded, timedOut.StatusCode);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(20), $"took {started.Elapsed}");
        Assert.DoesNotContain("sleep 300", await c.ExecOkAsync(id, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"));

        Assert.Equal(handovers, Handovers(d, id)); // all of it without .NET
        Assert.Equal("criruntime-monitor", Exe(shimPid));
        // The monitor outlives its execs now (kubelet exec probes come every few seconds): it
        // keeps nothing of their output (300 kB here), only a few pages of heap, stack and libc state.
        for (var i = 0; i < 3; i++) // and it does not grow with each exec
            Assert.Equal(300000, (await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "head -c 300000 /dev/zero" }, Timeout = 30 })).Stdout.Length);
        var afterKb = ProcMemory.PrivateKb(shimPid);
        Assert.True(afterKb <= idleKb + 32, $"the idle monitor: private {idleKb} kB after its first exec, {afterKb} kB after the rest\n{ProcMemory.Breakdown(shimPid)}");
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    /// <summary>The monitor runs several execs at once, each answered with its own output; one
    /// still running when the container exits is killed and answered, and the exit is then
    /// recorded by .NET as ever (not as a dead shim's 255).</summary>
    [Fact]
    public async Task ExecSync_ServedByTheMonitor_ManyAtOnce_AndOneRunningWhenTheContainerExits()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("monexecs");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("idle", image, "sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"));
        var (shimPid, _) = d.ContainerPids(id);
        await WaitForMonitorAsync(shimPid);
        var handovers = Handovers(d, id);

        var many = Enumerable.Range(0, 10).Select(async i =>
        {
            var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", $"sleep 0.{i % 3}; echo out-{i}; echo err-{i} >&2; exit {i}" }, Timeout = 30 });
            Assert.Equal($"out-{i}\n", r.Stdout.ToStringUtf8());
            Assert.Equal($"err-{i}\n", r.Stderr.ToStringUtf8());
            Assert.Equal(i, r.ExitCode);
        });
        await Task.WhenAll(many);
        Assert.Equal(handovers, Handovers(d, id));

        var running = c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sleep", "300" }, Timeout = 0 }).ResponseAsync;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!(await c.ExecOkAsync(id, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")).Contains("sleep 300"))
        {
            Assert.True(DateTime.UtcNow < deadline, "the exec never ran");
            await Task.Delay(20);
        }
        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 10 });
        var ended = await running.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(137, ended.ExitCode); // killed with its container
        var exited = await c.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerExited, exited.State);
        Assert.Equal(7, exited.ExitCode); // recorded by .NET: the trap's code
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task WithTheMonitorOff_TheDotNetSupervisorStays()
    {
        using var d = new DaemonProcess();
        d.Environment["CRIRUNTIME_MONITOR"] = "0";
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("nomonitor");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("idle", image, "sleep", "3600"));
        await c.Runtime.ReopenContainerLogAsync(new ReopenContainerLogRequest { ContainerId = id });
        var shimPid = d.ShimPid(id);
        Assert.Equal("criruntime-shim", Exe(shimPid));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
