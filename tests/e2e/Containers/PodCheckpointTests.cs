using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Containers.CountingContainer;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>CheckpointPod and RestorePod (docs/checkpoint.md) with kubelet-shaped requests: a pod
/// of two counters is frozen as one, dumped, always thawed, and brought back in a new pod. Needs
/// criu >= 4.2 (hack/deps.sh).</summary>
[Collection(RegistryCollection.Name)]
public class PodCheckpointTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private sealed record CounterPod(string PodId, PodSandboxConfig Sandbox, KubePod Pod, string One, string Two);

    /// <summary>A kubelet-shaped pod running two counters, "one" and "two", both past <paramref name="atLeast"/>.</summary>
    private static async Task<CounterPod> CounterPodAsync(TestNode node, string name, int atLeast = 3)
    {
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await node.C.RunPodAsync(sandbox);
        node.Track(podId);
        var imageId = await ImageIdAsync(node);
        var one = await node.C.StartNewAsync(podId, sandbox, Kubelet.Container(pod, "one", imageId, node.Busybox, Counter));
        var two = await node.C.StartNewAsync(podId, sandbox, Kubelet.Container(pod, "two", imageId, node.Busybox, Counter));
        await WaitCountAsync(node.C, one, atLeast);
        await WaitCountAsync(node.C, two, atLeast);
        return new CounterPod(podId, sandbox, pod, one, two);
    }

    private static async Task<string> ImageIdAsync(TestNode node) =>
        (await node.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = node.Busybox } })).Image.Id;

    /// <summary>The container's v1 freezer state (this node has the v1 freezer), read from the host.</summary>
    private static string FreezerState(TestNode node, string containerId)
    {
        var root = Path.Combine("/sys/fs/cgroup/freezer", Path.GetFileName(node.D.Dir));
        var dir = Directory.EnumerateDirectories(root, containerId, SearchOption.AllDirectories).Single();
        return File.ReadAllText(Path.Combine(dir, "freezer.state")).Trim();
    }

    private static async Task AssertRunningAndCountingAsync(TestNode node, string id)
    {
        Assert.Equal("THAWED", FreezerState(node, id));
        Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(id)).State);
        var now = await CountAsync(node.C, id);
        await WaitCountAsync(node.C, id, now + 2);
    }

    private static string EmptyDir(TestNode node, string name) => Directory.CreateDirectory(Path.Combine(node.D.Dir, name)).FullName;

    [Fact]
    public async Task CheckpointPod_ThenRestorePod_InANewPod_BothCountersContinueFromTheirCheckpointedValues()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var old = await CounterPodAsync(node, "pair-a", atLeast: 8);
        // Lower bounds of the values in memory when the pod was frozen.
        var before = (One: await CountAsync(node.C, old.One), Two: await CountAsync(node.C, old.Two));
        var output = EmptyDir(node, "pod-checkpoint");

        await node.C.Runtime.CheckpointPodAsync(new CheckpointPodRequest { PodSandboxId = old.PodId, OutputPath = output, Options = { ["timeout"] = "2m" } });

        Assert.True(File.Exists(Path.Combine(output, "pod.dump")));
        using (var dump = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(output, "pod.dump"))))
        {
            Assert.Equal(old.PodId, dump.RootElement.GetProperty("id").GetString());
            Assert.Equal(["one", "two"], dump.RootElement.GetProperty("containers").EnumerateArray().Select(c => c.GetProperty("name").GetString()).Order());
        }
        foreach (var name in new[] { "one", "two" })
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(output, "containers", name + ".tar")));
        // Thawed and counting on; nothing left in the daemon's scratch space.
        await AssertRunningAndCountingAsync(node, old.One);
        await AssertRunningAndCountingAsync(node, old.Two);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(node.D.Root, "checkpoints")));
        // Migrated: the original goes away.
        await node.C.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = old.PodId });

        var pod = new KubePod { Name = "pair-b", LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var imageId = await ImageIdAsync(node);
        var restored = await node.C.Runtime.RestorePodAsync(new RestorePodRequest
        {
            CheckpointPath = output,
            Config = sandbox,
            ContainerConfigs =
            {
                Kubelet.Container(pod, "two", imageId, node.Busybox, Counter),
                Kubelet.Container(pod, "one", imageId, node.Busybox, Counter),
            },
        });
        node.Track(restored.PodSandboxId);

        Assert.NotEqual(old.PodId, restored.PodSandboxId);
        var podStatus = (await node.C.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = restored.PodSandboxId })).Status;
        Assert.Equal(pod.Uid, podStatus.Metadata.Uid);
        Assert.Equal(PodSandboxState.SandboxReady, podStatus.State);
        Assert.Equal(["one", "two"], restored.RestoredContainers.Select(c => c.Name).Order());
        foreach (var c in restored.RestoredContainers)
        {
            var status = await node.C.StatusAsync(c.ContainerId);
            Assert.Equal(ContainerState.ContainerCreated, status.State);
            Assert.Equal(restored.PodSandboxId, (await node.C.Runtime.ListContainersAsync(new ListContainersRequest { Filter = new ContainerFilter { Id = c.ContainerId } })).Containers.Single().PodSandboxId);
        }

        foreach (var c in restored.RestoredContainers)
            await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = c.ContainerId });

        foreach (var c in restored.RestoredContainers)
        {
            var checkpointed = c.Name == "one" ? before.One : before.Two;
            Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(c.ContainerId)).State);
            var first = await CountAsync(node.C, c.ContainerId);
            Assert.True(first >= checkpointed, $"{c.Name}: restored counter at {first}, checkpointed at {checkpointed}");
            await WaitCountAsync(node.C, c.ContainerId, first + 3);
            Assert.Equal("kept\n", await node.C.ExecOkAsync(c.ContainerId, "cat", "/written.txt"));
            // Its stdout goes on into the new pod's log directory, from the checkpointed value on.
            var log = Path.Combine(Kubelet.LogDirectory(pod), c.Name, "0.log");
            var logged = File.ReadAllLines(log).Select(l => l.Split(' ', 4)).Where(f => f.Length == 4 && f[1] == "stdout").Select(f => int.Parse(f[3])).ToList();
            Assert.NotEmpty(logged);
            Assert.True(logged[0] >= checkpointed, $"{c.Name}: first logged value {logged[0]}, checkpointed at {checkpointed}");
        }
    }

    /// <summary>The call's time limit passes while CRIU dumps (CRIU alone needs longer than 50 ms
    /// to start): DeadlineExceeded, nothing written, and both containers thawed before the answer.</summary>
    [Fact]
    public async Task CheckpointPod_WhoseTimeoutPassesMidCheckpoint_IsDeadlineExceeded_AndLeavesBothRunningAndThawed()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = await CounterPodAsync(node, "pair-deadline");
        var output = EmptyDir(node, "pod-checkpoint");

        var e = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.CheckpointPodAsync(
            new CheckpointPodRequest { PodSandboxId = pod.PodId, OutputPath = output, Options = { ["timeout"] = "50ms" } }));

        Assert.True(e.StatusCode == StatusCode.DeadlineExceeded, $"{e.StatusCode}: {e.Status.Detail}");
        Assert.Contains("thawed", e.Status.Detail);
        Assert.Empty(Directory.GetFileSystemEntries(output));
        await AssertRunningAndCountingAsync(node, pod.One);
        await AssertRunningAndCountingAsync(node, pod.Two);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(node.D.Root, "checkpoints")));
    }

    /// <summary>The kubelet's own deadline on the call (50 ms) passes mid-checkpoint: the client
    /// gets DeadlineExceeded at once while the daemon goes on to thaw. A CheckpointContainer of one
    /// of the containers waits for its lock, held until the pod checkpoint has thawed: it succeeds
    /// (CRIU could not seize a container left frozen), and both are THAWED and counting.</summary>
    [Fact]
    public async Task CheckpointPod_WhoseCallDeadlinePassesMidCheckpoint_ThawsBothBeforeReleasingThem()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = await CounterPodAsync(node, "pair-call-deadline");
        var output = EmptyDir(node, "pod-checkpoint");

        var e = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.CheckpointPodAsync(
            new CheckpointPodRequest { PodSandboxId = pod.PodId, OutputPath = output }, deadline: DateTime.UtcNow.AddMilliseconds(50)));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = pod.One, Location = Path.Combine(node.D.Dir, "one.tar"), Timeout = 60 });

        Assert.Empty(Directory.GetFileSystemEntries(output));
        await AssertRunningAndCountingAsync(node, pod.One);
        await AssertRunningAndCountingAsync(node, pod.Two);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(node.D.Root, "checkpoints")));
    }

    [Fact]
    public async Task CheckpointPod_WithAnUnknownOption_OrAnOutputPathNotEmpty_IsInvalidArgumentNamingIt()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = await CounterPodAsync(node, "pair-invalid", atLeast: 1);
        var output = EmptyDir(node, "pod-checkpoint");

        var unknown = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.CheckpointPodAsync(
            new CheckpointPodRequest { PodSandboxId = pod.PodId, OutputPath = output, Options = { ["compress"] = "zstd" } }));
        Assert.Equal(StatusCode.InvalidArgument, unknown.StatusCode);
        Assert.Contains("options", unknown.Status.Detail);
        Assert.Contains("compress", unknown.Status.Detail);

        File.WriteAllText(Path.Combine(output, "theirs"), "keep me");
        var notEmpty = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.CheckpointPodAsync(
            new CheckpointPodRequest { PodSandboxId = pod.PodId, OutputPath = output }));
        Assert.Equal(StatusCode.InvalidArgument, notEmpty.StatusCode);
        Assert.Contains("output_path", notEmpty.Status.Detail);
        Assert.Contains("not empty", notEmpty.Status.Detail);
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(output, "theirs")));

        var missing = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.CheckpointPodAsync(
            new CheckpointPodRequest { PodSandboxId = pod.PodId, OutputPath = Path.Combine(node.D.Dir, "nowhere") }));
        Assert.Equal(StatusCode.InvalidArgument, missing.StatusCode);
        Assert.Contains("output_path", missing.Status.Detail);

        await AssertRunningAndCountingAsync(node, pod.One);
    }

    /// <summary>kill -9 of the daemon (fault point checkpoint-pod-after-freeze) while the pod is
    /// frozen: the containers stay frozen while no daemon runs, and the next daemon thaws them
    /// before it serves, from the freeze it recorded before freezing.</summary>
    [Fact]
    public async Task DaemonKilledWhileThePodIsFrozen_TheRestartedDaemonThawsBothContainers()
    {
        await using var node = await TestNode.StartAsync(_registry);
        node.D.Environment["CRIRUNTIME_FAULT"] = "checkpoint-pod-after-freeze";
        await node.D.RestartAsync();
        var pod = await CounterPodAsync(node, "pair-crash");
        var output = EmptyDir(node, "pod-checkpoint");

        await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.CheckpointPodAsync(
            new CheckpointPodRequest { PodSandboxId = pod.PodId, OutputPath = output }));
        await node.D.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("FROZEN", FreezerState(node, pod.One));
        Assert.Equal("FROZEN", FreezerState(node, pod.Two));

        node.D.Environment.Clear();
        await node.D.StartAsync();

        Assert.Equal("THAWED", FreezerState(node, pod.One));
        Assert.Equal("THAWED", FreezerState(node, pod.Two));
        await AssertRunningAndCountingAsync(node, pod.One);
        await AssertRunningAndCountingAsync(node, pod.Two);
        Assert.Empty(Directory.GetFiles(Path.Combine(node.D.Root, "checkpoints"), "frozen-*"));
    }

    [Fact]
    public async Task RestorePod_WithRestoreOff_IsFailedPrecondition_AndWithAConfigForNoCheckpointedContainer_IsInvalidArgument_AndLeavesNoPod()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var old = await CounterPodAsync(node, "pair-src", atLeast: 1);
        var output = EmptyDir(node, "pod-checkpoint");
        await node.C.Runtime.CheckpointPodAsync(new CheckpointPodRequest { PodSandboxId = old.PodId, OutputPath = output, ContainerIds = { old.One } });
        var pod = new KubePod { Name = "pair-dst", LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var imageId = await ImageIdAsync(node);
        RestorePodRequest Request(params string[] names)
        {
            var r = new RestorePodRequest { CheckpointPath = output, Config = Kubelet.Sandbox(pod) };
            foreach (var n in names) r.ContainerConfigs.Add(Kubelet.Container(pod, n, imageId, node.Busybox, Counter));
            return r;
        }

        var off = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.RestorePodAsync(Request("one")));
        Assert.Equal(StatusCode.FailedPrecondition, off.StatusCode);
        Assert.Contains("restore = false", off.Status.Detail);

        File.WriteAllText(Path.Combine(node.D.DropInDir, "restore.toml"), "[checkpoint]\nrestore = true\n");
        await node.D.RestartAsync();
        var unmatched = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.RestorePodAsync(Request("one", "two")));
        Assert.Equal(StatusCode.InvalidArgument, unmatched.StatusCode);
        Assert.Contains("container_configs[1]", unmatched.Status.Detail);
        var option = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            var r = Request("one");
            r.Options["lazy"] = "true";
            await node.C.Runtime.RestorePodAsync(r);
        });
        Assert.Equal(StatusCode.InvalidArgument, option.StatusCode);
        Assert.Contains("lazy", option.Status.Detail);

        // A container archive CreateContainer refuses, after the pod was made: the pod goes again.
        File.WriteAllText(Path.Combine(output, "containers", "one.tar"), "not a tar");
        var broken = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.RestorePodAsync(Request("one")));
        Assert.Equal(StatusCode.InvalidArgument, broken.StatusCode);
        Assert.Contains("one.tar", broken.Status.Detail);

        Assert.Equal([old.PodId], (await node.C.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items.Select(p => p.Id));
        Assert.Equal(new[] { old.One, old.Two }.Order(), (await node.C.Runtime.ListContainersAsync(new ListContainersRequest())).Containers.Select(c => c.Id).Order());
    }
}
