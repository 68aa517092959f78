using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>Containers through CRI end to end: an image pulled from the real registry, a pod with
/// real CNI, the NativeAOT shim running the container in its own namespaces.</summary>
[Collection(RegistryCollection.Name)]
public class ContainerLifecycleTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task Container_RunsTheCommand_LogsInCriFormat_AndReportsItsExit()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var logDir = Path.Combine(d.Dir, "logs");
        var pod = PodConfig("lifecycle", logDir);
        var podId = await c.RunPodAsync(pod);

        var id = await c.CreateAsync(podId, pod, Container("main", image, "sh", "-c", "echo hello from $(hostname); echo oops >&2; exit 7"));
        var created = await c.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerCreated, created.State);
        Assert.Equal(0, created.StartedAt);

        await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var exited = await c.WaitExitedAsync(id);
        Assert.Equal(ContainerState.ContainerExited, exited.State);
        Assert.Equal(7, exited.ExitCode);
        Assert.Equal("Error", exited.Reason);
        Assert.True(exited.FinishedAt >= exited.StartedAt && exited.StartedAt > 0);

        var log = Path.Combine(logDir, "main.log");
        Assert.Equal(log, exited.LogPath);
        Assert.Equal("hello from lifecycle\n", LogText(log));
        Assert.Equal("oops\n", LogText(log, "stderr"));
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z stdout F hello from lifecycle$", File.ReadLines(log).First(l => l.Contains(" stdout ")));

        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task StopContainer_SignalsThenKills_AndStopAndRemoveAreIdempotent()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("stop");
        var podId = await c.RunPodAsync(pod);
        // pid 1 ignores SIGTERM without a handler: only the SIGKILL after the timeout ends it.
        var id = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
        var listed = await c.Runtime.ListContainersAsync(new ListContainersRequest { Filter = new ContainerFilter { PodSandboxId = podId, State = new ContainerStateValue { State = ContainerState.ContainerRunning } } });
        Assert.Equal([id], listed.Containers.Select(x => x.Id));

        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 1 });
        var status = await c.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerExited, status.State);
        Assert.Equal(137, status.ExitCode);
        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 1 });
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id });
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        var e = await Assert.ThrowsAsync<RpcException>(async () => await c.StatusAsync(id));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task RemovePodSandbox_RemovesItsRunningContainers_AndLeavesNothing()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("cascade");
        var podId = await c.RunPodAsync(pod);
        var a = await c.StartNewAsync(podId, pod, Container("a", image, "sleep", "3600"));
        var b = await c.CreateAsync(podId, pod, Container("b", image, "sleep", "3600"));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        Assert.Empty((await c.Runtime.ListContainersAsync(new ListContainersRequest())).Containers);
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.Root, "containers")));
        // Dispose asserts no mount, process or cgroup is left.
    }

    [Fact]
    public async Task CreateContainer_BadInput_IsRefusedNamingTheField_AndRollsBack()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        var pod = PodConfig("bad");
        var podId = await c.RunPodAsync(pod);

        var notPulled = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, Container("x", image, "true")));
        Assert.Equal(StatusCode.NotFound, notPulled.StatusCode);
        await c.PullAsync(image);

        var badMount = Container("x", image, "true");
        badMount.Mounts.Add(new Mount { ContainerPath = "/data", HostPath = "/no/such/dir" });
        var e = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, badMount));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("config.mounts[0].host_path", e.Status.Detail);

        var badQuota = Container("x", image, "true");
        badQuota.Linux.Resources.CpuQuota = 10;
        e = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, badQuota));
        Assert.Contains("cpu_quota", e.Status.Detail);

        var noPod = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync("0123456789", pod, Container("x", image, "true")));
        Assert.Equal(StatusCode.NotFound, noPod.StatusCode);

        Assert.Empty((await c.Runtime.ListContainersAsync(new ListContainersRequest())).Containers);
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.Root, "containers")));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task GetContainerEvents_ReportsCreatedStartedStoppedDeleted_InOrder()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("events");
        var podId = await c.RunPodAsync(pod);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var stream = c.Runtime.GetContainerEvents(new GetEventsRequest(), cancellationToken: cts.Token);
        var received = new List<ContainerEventResponse>();
        await stream.ResponseHeadersAsync;
        var reader = Task.Run(async () =>
        {
            while (await stream.ResponseStream.MoveNext(cts.Token))
            {
                received.Add(stream.ResponseStream.Current);
                if (stream.ResponseStream.Current.ContainerEventType == ContainerEventType.ContainerDeletedEvent) return;
            }
        });

        var id = await c.StartNewAsync(podId, pod, Container("brief", image, "true"));
        await c.WaitExitedAsync(id);
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        await reader.WaitAsync(cts.Token);

        var mine = received.Where(e => e.ContainerId == id).ToList();
        Assert.Equal(
            [ContainerEventType.ContainerCreatedEvent, ContainerEventType.ContainerStartedEvent, ContainerEventType.ContainerStoppedEvent, ContainerEventType.ContainerDeletedEvent],
            mine.Select(e => e.ContainerEventType));
        Assert.True(mine.Zip(mine.Skip(1)).All(p => p.First.CreatedAt <= p.Second.CreatedAt), "event timestamps go backwards");
        Assert.Equal(podId, mine[0].PodSandboxStatus.Id);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
