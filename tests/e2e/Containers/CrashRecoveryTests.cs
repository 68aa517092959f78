using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>A daemon that dies in the middle of CreateContainer leaves a half-made container
/// (mounted rootfs, bundle) without a record; the next daemon removes it before serving. One that
/// dies in the middle of StartContainer (the shim has set the container up, waiting for the
/// start) leaves a created container that the next daemon starts.</summary>
[Collection(RegistryCollection.Name)]
public class CrashRecoveryTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task DaemonKilledMidCreateContainer_RestartSweepsTheHalfMadeContainer_AndTheNameIsReusable()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        d.Environment["CRIRUNTIME_FAULT"] = "create-container-before-record";
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("crashy");
        string podId;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, Container("main", image, "sleep", "3600")));
        }
        await d.WaitForExitAsync(TimeSpan.FromSeconds(30));

        // What the crash left: a container dir without a record, its overlay mount (no shim:
        // StartContainer starts it).
        var containerDirs = Path.Combine(d.Root, "containers");
        var halfMade = Assert.Single(Directory.GetDirectories(containerDirs));
        Assert.False(File.Exists(Path.Combine(halfMade, "container.json")));
        var rootfs = Path.Combine(halfMade, "bundle", "rootfs");
        Assert.Contains(rootfs, MountPoints());
        Assert.Empty(ShimStateDirs(d));

        d.Environment.Clear();
        await d.StartAsync();
        Assert.False(Directory.Exists(halfMade), "the half-made container's directory survived the restart");
        Assert.DoesNotContain(rootfs, MountPoints());
        Assert.Empty(ShimStateDirs(d));
        Assert.Empty(ProcessesMentioning(d.Dir).Where(p => p != d.Pid));
        Assert.Contains("recovery: removed the rootfs mount of half-created container", d.Output);

        using (var c = d.Client())
        {
            Assert.Empty((await c.Runtime.ListContainersAsync(new ListContainersRequest())).Containers);
            var id = await c.StartNewAsync(podId, pod, Container("main", image, "sleep", "3600"));
            Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    [Fact]
    public async Task DaemonKilledMidStartContainer_RestartKeepsTheContainerCreated_AndStartRunsIt()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        d.Environment["CRIRUNTIME_FAULT"] = "start-container-after-shim";
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("crashy-start");
        string podId, id;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            id = await c.CreateAsync(podId, pod, Container("main", image, "sleep", "3600"));
            await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }));
        }
        await d.WaitForExitAsync(TimeSpan.FromSeconds(30));
        // The shim had set the container up and waits for the start that never came.
        Assert.Single(ShimStateDirs(d));

        d.Environment.Clear();
        await d.StartAsync();
        using (var c = d.Client())
        {
            Assert.Equal(ContainerState.ContainerCreated, (await c.StatusAsync(id)).State);
            await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });
            Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
            Assert.Equal("ok", (await c.ExecOkAsync(id, "echo", "ok")).Trim());
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    [Fact]
    public async Task DaemonKilledAfterCreateContainer_RestartKeepsTheContainerCreated_AndStartRunsIt()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("created-restart");
        string podId, id;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            id = await c.CreateAsync(podId, pod, Container("main", image, "sleep", "3600"));
        }
        await d.KillAsync();
        await d.StartAsync();
        using (var c = d.Client())
        {
            var created = await c.StatusAsync(id);
            Assert.Equal(ContainerState.ContainerCreated, created.State);
            Assert.True(created.CreatedAt > 0);
            Assert.Contains((await c.Runtime.ListContainersAsync(new ListContainersRequest())).Containers, x => x.Id == id && x.State == ContainerState.ContainerCreated);
            await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });
            Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(id)).State);
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    /// <summary>The shims' state dirs (one per container whose shim was started).</summary>
    private static string[] ShimStateDirs(DaemonProcess d) =>
        Directory.Exists(Path.Combine(d.State, "c")) ? Directory.GetDirectories(Path.Combine(d.State, "c")) : [];

    private static List<string> MountPoints() =>
        [.. File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])];

    private static List<int> ProcessesMentioning(string dir)
    {
        var pids = new List<int>();
        foreach (var procDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(procDir), out var pid) || pid == Environment.ProcessId) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(procDir, "cmdline")).Contains(dir, StringComparison.Ordinal)) pids.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return pids;
    }
}
