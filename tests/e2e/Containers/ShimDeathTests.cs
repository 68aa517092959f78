using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>A shim killed with -9 takes its container with it (PR_SET_PDEATHSIG); the daemon
/// reports the container exited with a reason, whether it was running at the time or only
/// set up by a StartContainer cut short, whether the daemon was up or not, and leaves nothing behind (the leak check of Dispose also looks for the container's cgroup).</summary>
[Collection(RegistryCollection.Name)]
public class ShimDeathTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task ShimKill9_ContainerExitedWithReason_StoppedEvent_Removable()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("shimkill");
        using var c = d.Client();
        await c.PullAsync(image);
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        var (shimPid, containerPid) = d.ContainerPids(id);

        await KillShimAndAwaitStoppedAsync(c, id, shimPid);

        AssertDiedWithShim(await c.StatusAsync(id));
        Assert.False(ProcState.IsRunning(containerPid), $"container process {containerPid} outlived its shim");
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        await Assert.ThrowsAsync<RpcException>(() => c.StatusAsync(id));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    /// <summary>The exit of a shim killed with -9 can be recorded while the dying shim still looks
    /// alive (or the cleanup then fail), leaving the container's cgroup with something in it: here
    /// the cgroups are made again by hand, with a process inside. RemoveContainer kills it and
    /// removes them, rather than forget the container and leak them (CI once found the cgroup of
    /// the test above left behind).</summary>
    [Fact]
    public async Task ShimKill9_ThenAProcessLeftInTheContainersCgroup_RemoveContainerKillsItAndRemovesTheCgroup()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("shimkill-leftover");
        using var c = d.Client();
        await c.PullAsync(image);
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        var cgroups = d.ContainerCgroups(id);
        Assert.NotEmpty(cgroups);
        var (shimPid, _) = d.ContainerPids(id);

        await KillShimAndAwaitStoppedAsync(c, id, shimPid);
        AssertDiedWithShim(await c.StatusAsync(id));

        using var straggler = Process.Start(new ProcessStartInfo("sleep", "600"))!;
        foreach (var dir in cgroups)
        {
            Directory.CreateDirectory(dir);
            // A new v1 cpuset has no cpus or mems, and takes no process, until given its parent's.
            foreach (var file in new[] { "cpuset.cpus", "cpuset.mems" })
                if (File.Exists(Path.Combine(dir, file)))
                    File.WriteAllText(Path.Combine(dir, file), File.ReadAllText(Path.Combine(Path.GetDirectoryName(dir)!, file)).Trim());
            File.WriteAllText(Path.Combine(dir, "cgroup.procs"), straggler.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        Assert.Equal(cgroups.Order(), d.ContainerCgroups(id).Order());

        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });

        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            await straggler.WaitForExitAsync(cts.Token);
        Assert.Equal(137, straggler.ExitCode);
        Assert.Empty(d.ContainerCgroups(id));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task ShimKill9_WhileDaemonIsDown_RestartReportsExitedWithReason_Removable()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("shimkill-down");
        string podId, id;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        }
        var (shimPid, containerPid) = d.ContainerPids(id);

        await d.KillAsync();
        KillNine(shimPid);
        await d.StartAsync();

        using (var c = d.Client())
        {
            AssertDiedWithShim(await c.StatusAsync(id));
            Assert.False(ProcState.IsRunning(containerPid), $"container process {containerPid} outlived its shim");
            await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    [Fact]
    public async Task CreatedContainer_HasNoShimNorCgroup_UntilStartContainerStartsThem()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("created-noshim");
        using var c = d.Client();
        await c.PullAsync(image);
        var podId = await c.RunPodAsync(pod);
        var id = await c.CreateAsync(podId, pod, Container("later", image, "sleep", "3600"));
        Assert.Equal(ContainerState.ContainerCreated, (await c.StatusAsync(id)).State);
        Assert.Empty(d.ContainerCgroups(id));
        Assert.False(Directory.Exists(Path.Combine(d.State, "c", id[..20])), "a created container has a shim state dir");

        await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
        Assert.NotEmpty(d.ContainerCgroups(id));
        var (shimPid, containerPid) = d.ContainerPids(id);
        Assert.True(ProcState.IsRunning(containerPid), $"container process {containerPid} is not running");
        // Once started the shim execs the C monitor from its reaper thread: while the kernel ends
        // the other threads, the thread-group leader reads as a zombie under the same pid (CI once
        // saw it so). The shim is running if it comes out of that.
        Assert.True(SpinWait.SpinUntil(() => ProcState.IsRunning(shimPid), TimeSpan.FromSeconds(5)), $"shim {shimPid} is not running");
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    /// <summary>StartContainer cut short by a crash after the shim set the container up: the shim
    /// waits for a start, the daemon is down, the shim is killed: the restarted daemon reports the
    /// container exited (the shim died), removes its cgroup and refuses to start it.</summary>
    [Fact]
    public async Task ShimKill9_OfCreatedContainer_WhileDaemonIsDown_RestartReportsExited_StartIsFailedPrecondition()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        d.Environment["CRIRUNTIME_FAULT"] = "start-container-after-shim";
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("shimkill-created-down");
        string podId, id;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            id = await c.CreateAsync(podId, pod, Container("never-started", image, "sleep", "3600"));
            await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }));
        }
        await d.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEmpty(d.ContainerCgroups(id));
        KillNine(d.ShimPid(id));
        d.Environment.Clear();
        await d.StartAsync();

        using (var c = d.Client())
        {
            AssertDiedWithShim(await c.StatusAsync(id));
            Assert.Empty(d.ContainerCgroups(id));
            var start = await Assert.ThrowsAsync<RpcException>(() => c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }).ResponseAsync);
            Assert.Equal(StatusCode.FailedPrecondition, start.StatusCode);
            Assert.Contains("exited", start.Status.Detail, StringComparison.Ordinal);
            await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    /// <summary>A shim that takes requests and never answers them (stopped here with SIGSTOP; CI once
    /// saw one hang after a daemon restart) holds no call longer than runtime.shim_answer_timeout
    /// beyond the request's own time. A probe's ExecSync is DeadlineExceeded naming the shim;
    /// StopContainer kills the shim, and the container with it, and reports why; then the
    /// container and the pod are removed with nothing left (the leak check of Dispose).</summary>
    [Fact]
    public async Task ShimThatNeverAnswers_ExecSyncIsDeadlineExceeded_StopContainerKillsIt_AndEverythingIsRemoved()
    {
        using var d = new DaemonProcess();
        File.WriteAllText(Path.Combine(d.DropInDir, "50-shim-answer.toml"), "[runtime]\nshim_answer_timeout = \"2s\"\n");
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("shim-silent");
        var c = d.Client();
        await c.PullAsync(image);
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        var (shimPid, containerPid) = d.ContainerPids(id);
        // Stopped once it is the monitor, not while the .NET shim execs into it (a stop sent then
        // can be lost: CI once saw the shim answer), and seen stopped before anything is asked.
        await ShimMonitorTests.WaitForMonitorAsync(shimPid);
        Assert.Equal(0, ProcState.Signal(shimPid, ProcState.SigStop));
        var stopDeadline = DateTime.UtcNow.AddSeconds(20);
        while (ProcState.Of(shimPid) != 'T')
        {
            Assert.True(DateTime.UtcNow < stopDeadline, $"shim {shimPid} did not stop");
            await Task.Delay(10);
        }
        try
        {
            // Every call has a deadline well past the bound: a hang fails the test, not CI's clock.
            var within = DateTime.UtcNow.AddSeconds(30);
            var probe = await Assert.ThrowsAsync<RpcException>(() => c.Runtime.ExecSyncAsync(
                new ExecSyncRequest { ContainerId = id, Cmd = { "true" }, Timeout = 1 }, deadline: within).ResponseAsync);
            Assert.Equal(StatusCode.DeadlineExceeded, probe.StatusCode);
            Assert.Contains("shim", probe.Status.Detail, StringComparison.Ordinal);
            Assert.Contains("did not answer exec within 3s", probe.Status.Detail, StringComparison.Ordinal);

            // A daemon killed and started again meanwhile asks every shim for its state as it
            // starts: this one answers nothing, and the daemon still starts and reports the
            // container as it last recorded it.
            await d.KillAsync();
            await d.StartAsync();
            c.Dispose();
            c = d.Client();
            Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);

            await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 1 }, deadline: DateTime.UtcNow.AddSeconds(30));
            var status = await c.StatusAsync(id);
            AssertDiedWithShim(status);
            Assert.False(ProcState.IsRunning(shimPid), $"shim {shimPid} that did not answer stop still runs");
            Assert.False(ProcState.IsRunning(containerPid), $"container process {containerPid} outlived its shim");
            Assert.Contains("did not answer stop within 3s: killed it", d.Output, StringComparison.Ordinal);
        }
        finally
        {
            ProcState.Signal(shimPid, ProcState.SigCont);
        }
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id }, deadline: DateTime.UtcNow.AddSeconds(30));
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, deadline: DateTime.UtcNow.AddSeconds(30));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, deadline: DateTime.UtcNow.AddSeconds(30));
        c.Dispose();
    }

    /// <summary>Kills the running container's shim with -9 and waits for the container's
    /// CONTAINER_STOPPED event (subscribed before the kill, so it cannot be missed).</summary>
    private static async Task KillShimAndAwaitStoppedAsync(CriClient c, string id, int shimPid)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var events = c.Runtime.GetContainerEvents(new GetEventsRequest(), cancellationToken: cts.Token);
        await events.ResponseHeadersAsync;
        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
        KillNine(shimPid);

        var stopped = false;
        while (!stopped && await events.ResponseStream.MoveNext(cts.Token))
            stopped = events.ResponseStream.Current is { ContainerEventType: ContainerEventType.ContainerStoppedEvent } e && e.ContainerId == id;
        Assert.True(stopped, "no CONTAINER_STOPPED event for the container whose shim was killed");
    }

    private static void AssertDiedWithShim(ContainerStatus status)
    {
        Assert.Equal(ContainerState.ContainerExited, status.State);
        Assert.Equal(255, status.ExitCode);
        Assert.Equal("Error", status.Reason);
        Assert.Contains("shim", status.Message, StringComparison.Ordinal);
        Assert.True(status.FinishedAt >= status.StartedAt && status.FinishedAt > 0);
    }

    private static void KillNine(int shimPid)
    {
        using var shim = Process.GetProcessById(shimPid);
        // The shim may be exec'ing the monitor (same pid): cmdline reads "" until the new image
        // has its arguments (CI once read it so).
        var cmdline = "";
        Assert.True(SpinWait.SpinUntil(() => (cmdline = File.ReadAllText($"/proc/{shimPid}/cmdline")).Length > 0, TimeSpan.FromSeconds(10)),
            $"pid {shimPid}: cmdline stayed empty");
        Assert.Contains("supervise", cmdline, StringComparison.Ordinal);
        shim.Kill(); // SIGKILL
        shim.WaitForExit();
    }

}
