using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Containers.CountingContainer;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>Issue 12: "a restored container's stdout/stderr continue into its CRI log; exec,
/// attach and stats work on it like on any other container". The log and exec are proven by
/// <see cref="RestoreTests"/> and <see cref="PodCheckpointTests"/>; these prove ContainerStats,
/// ListContainerStats, PodSandboxStats and Attach on containers restored by CreateContainer from
/// an archive and by RestorePod, with kubelet-shaped requests. Needs criu >= 4.2 (hack/deps.sh).</summary>
[Collection(RegistryCollection.Name)]
public class RestoredStreamsTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private const int HeldMb = 20;
    private const ulong HeldBytes = HeldMb * 1024UL * 1024UL;

    /// <summary>A dd holding <see cref="HeldMb"/> MiB it filled from /dev/zero (blocked on its
    /// pipe to sleep, which never reads): memory the restore must bring back into the new
    /// container's cgroup.</summary>
    private static readonly string Holder = $"dd if=/dev/zero bs={HeldMb}M count=1 2>/dev/null | sleep 100000 & ";

    /// <summary><see cref="Counter"/> with <see cref="Holder"/> beside it.</summary>
    private static readonly string[] HoldingCounter = ["sh", "-c", Holder + Counter[2]];

    /// <summary><see cref="HoldingCounter"/> that counts on stderr too ("e" and the value).</summary>
    private static readonly string[] HoldingTwoStreamCounter =
        ["sh", "-c", Holder + "echo kept > /written.txt; rm /etc/group; i=0; while true; do echo $i > /count.new; mv /count.new /count; echo $i; echo e$i >&2; i=$((i+1)); sleep 0.2; done"];

    /// <summary>Waits inside the container until the dd of <see cref="HoldingCounter"/> has its MiB resident.</summary>
    private static Task WaitResidentAsync(CriClient c, string id) =>
        c.ExecOkAsync(id, "sh", "-c", $"until p=$(pidof dd) && [ \"$(awk '/VmRSS/{{print $2}}' /proc/$p/status)\" -ge {HeldMb * 1024} ]; do sleep 0.05; done");

    [Fact]
    public async Task RestoredCounter_InANewPod_HasCpuMemoryAndWritableLayerStats_AndAttachSeesItCountOnFromTheCheckpoint()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var imageId = await RestoreTests.ImageIdAsync(node);
        var (oldPodId, oldSandbox, oldPod) = await RestoreTests.KubePodAsync(node, "stats-a");
        var oldId = await node.C.StartNewAsync(oldPodId, oldSandbox, Kubelet.Container(oldPod, "counter", imageId, node.Busybox, HoldingTwoStreamCounter));
        await WaitResidentAsync(node.C, oldId);
        await WaitCountAsync(node.C, oldId, 5);
        var checkpointed = await CountAsync(node.C, oldId); // a lower bound of the value CRIU froze
        var location = Path.Combine(node.D.Dir, "checkpoint.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = oldId, Location = location, Timeout = 60 });
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = oldId, Timeout = 0 });

        var (podId, sandbox, pod) = await RestoreTests.KubePodAsync(node, "stats-b");
        var id = await node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "counter", location, location, HoldingTwoStreamCounter));
        await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        var first = await CountAsync(node.C, id);
        Assert.True(first >= checkpointed, $"restored counter at {first}, checkpointed at {checkpointed}");

        // Stats: the restored processes are accounted to the new container's cgroup, the dd's
        // restored MiB included, and its writable layer (the archive's diff) is measured.
        var stats = (await node.C.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats;
        AssertRestoredStats(node, id, stats, HeldBytes);
        // CPU goes on being counted while it runs.
        await WaitCountAsync(node.C, id, first + 3);
        var later = (await node.C.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats;
        Assert.True(later.Cpu.UsageCoreNanoSeconds.Value > stats.Cpu.UsageCoreNanoSeconds.Value,
            $"cpu {stats.Cpu.UsageCoreNanoSeconds.Value} -> {later.Cpu.UsageCoreNanoSeconds.Value}");
        // ListContainerStats has it, by id and by pod.
        var byId = Assert.Single((await node.C.Runtime.ListContainerStatsAsync(new ListContainerStatsRequest { Filter = new ContainerStatsFilter { Id = id } })).Stats);
        AssertRestoredStats(node, id, byId, HeldBytes);
        var byPod = Assert.Single((await node.C.Runtime.ListContainerStatsAsync(new ListContainerStatsRequest { Filter = new ContainerStatsFilter { PodSandboxId = podId } })).Stats);
        Assert.Equal(id, byPod.Attributes.Id);
        Assert.Contains((await node.C.Runtime.ListContainerStatsAsync(new ListContainerStatsRequest())).Stats, s => s.Attributes.Id == id);

        // Attach: the restored process's stdout and stderr reach an attached client, going on
        // from the checkpointed value (not from 0), line after line.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (attached, attachedErr) = await AttachedCountsAsync(node.C, id, 5, stderrToo: true, cts.Token);
        Assert.True(attached[0] >= first, $"attached at {attached[0]}, restored counter was at {first}: [{string.Join(' ', attached)}]");
        Assert.Equal(Enumerable.Range(attached[0], attached.Count), attached);
        Assert.True(attachedErr[0] >= first, $"attached stderr at {attachedErr[0]}, restored counter was at {first}: [{string.Join(' ', attachedErr)}]");
        Assert.Equal(Enumerable.Range(attachedErr[0], attachedErr.Count), attachedErr);
        // Detached, it counts on.
        await WaitCountAsync(node.C, id, attached[^1] + 2);
        // A streaming exec (kubectl exec) sees the restored counter's state, past what was attached.
        var exec = await StreamingExecAsync(node.C, id, ["sh", "-c", "cat /count; echo err >&2"], cts.Token);
        Assert.True(int.Parse(exec.GetValueOrDefault((byte)1, "-1"), CultureInfo.InvariantCulture) > attached[^1], $"exec channels: {string.Join(", ", exec)}");
        Assert.Equal("err\n", exec.GetValueOrDefault((byte)2));
        Assert.Contains("\"Success\"", exec.GetValueOrDefault((byte)3));
        // Both streams went on into the new container's CRI log too, from the checkpointed value on.
        var log = File.ReadAllLines(Path.Combine(Kubelet.LogDirectory(pod), "counter", "0.log")).Select(l => l.Split(' ', 4)).Where(f => f.Length == 4).ToList();
        var loggedOut = log.Where(f => f[1] == "stdout").Select(f => int.Parse(f[3], CultureInfo.InvariantCulture)).ToList();
        var loggedErr = log.Where(f => f[1] == "stderr").Select(f => int.Parse(f[3].TrimStart('e'), CultureInfo.InvariantCulture)).ToList();
        Assert.True(loggedOut.Count > 0 && loggedOut[0] >= checkpointed, $"stdout logged from {loggedOut.FirstOrDefault(-1)}, checkpointed at {checkpointed}");
        Assert.True(loggedErr.Count > 0 && loggedErr[0] >= checkpointed, $"stderr logged from {loggedErr.FirstOrDefault(-1)}, checkpointed at {checkpointed}");
        Assert.Contains(attachedErr[^1], loggedErr);
    }

    [Fact]
    public async Task ContainersRestoredByRestorePod_HaveStats_AndAttachSeesThemCountOn()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var imageId = await RestoreTests.ImageIdAsync(node);
        var (oldPodId, oldSandbox, oldPod) = await RestoreTests.KubePodAsync(node, "pod-stats-a");
        var holder = await node.C.StartNewAsync(oldPodId, oldSandbox, Kubelet.Container(oldPod, "holder", imageId, node.Busybox, HoldingCounter));
        var plain = await node.C.StartNewAsync(oldPodId, oldSandbox, Kubelet.Container(oldPod, "plain", imageId, node.Busybox, Counter));
        await WaitResidentAsync(node.C, holder);
        await WaitCountAsync(node.C, holder, 5);
        await WaitCountAsync(node.C, plain, 5);
        var before = new Dictionary<string, int> { ["holder"] = await CountAsync(node.C, holder), ["plain"] = await CountAsync(node.C, plain) };
        var output = Directory.CreateDirectory(Path.Combine(node.D.Dir, "pod-checkpoint")).FullName;
        await node.C.Runtime.CheckpointPodAsync(new CheckpointPodRequest { PodSandboxId = oldPodId, OutputPath = output, Options = { ["timeout"] = "2m" } });
        await node.C.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = oldPodId });

        var pod = new KubePod { Name = "pod-stats-b", LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var restored = await node.C.Runtime.RestorePodAsync(new RestorePodRequest
        {
            CheckpointPath = output,
            Config = Kubelet.Sandbox(pod),
            ContainerConfigs =
            {
                Kubelet.Container(pod, "holder", imageId, node.Busybox, HoldingCounter),
                Kubelet.Container(pod, "plain", imageId, node.Busybox, Counter),
            },
        });
        node.Track(restored.PodSandboxId);
        foreach (var c in restored.RestoredContainers)
            await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = c.ContainerId });
        var ids = restored.RestoredContainers.ToDictionary(c => c.Name, c => c.ContainerId);
        foreach (var (name, id) in ids)
        {
            var first = await CountAsync(node.C, id);
            Assert.True(first >= before[name], $"{name}: restored counter at {first}, checkpointed at {before[name]}");
        }

        var listed = (await node.C.Runtime.ListContainerStatsAsync(new ListContainerStatsRequest { Filter = new ContainerStatsFilter { PodSandboxId = restored.PodSandboxId } })).Stats;
        Assert.Equal(ids.Values.Order(), listed.Select(s => s.Attributes.Id).Order());
        foreach (var (name, id) in ids)
        {
            AssertRestoredStats(node, id, listed.Single(s => s.Attributes.Id == id), name == "holder" ? HeldBytes : 1);
            AssertRestoredStats(node, id, (await node.C.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats, name == "holder" ? HeldBytes : 1);
        }
        // The pod's own stats count both, the held MiB included.
        var podStats = (await node.C.Runtime.PodSandboxStatsAsync(new PodSandboxStatsRequest { PodSandboxId = restored.PodSandboxId })).Stats;
        Assert.Equal(ids.Values.Order(), podStats.Linux.Containers.Select(s => s.Attributes.Id).Order());
        Assert.True(podStats.Linux.Memory.WorkingSetBytes.Value >= HeldBytes, $"pod working set {podStats.Linux.Memory.WorkingSetBytes.Value}");
        Assert.True(podStats.Linux.Cpu.UsageCoreNanoSeconds.Value > 0, "pod cpu 0");

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (attached, _) = await AttachedCountsAsync(node.C, ids["plain"], 4, stderrToo: false, cts.Token);
        Assert.True(attached[0] >= before["plain"], $"attached at {attached[0]}, checkpointed at {before["plain"]}: [{string.Join(' ', attached)}]");
        Assert.Equal(Enumerable.Range(attached[0], attached.Count), attached);
    }

    /// <summary>CPU used, memory (a working set of at least <paramref name="minWorkingSet"/>
    /// bytes, within the usage) and the writable layer (the counter's /written.txt, /count and
    /// the whiteout of /etc/group at least) of container <paramref name="id"/>.</summary>
    private static void AssertRestoredStats(TestNode node, string id, ContainerStats stats, ulong minWorkingSet)
    {
        Assert.Equal(id, stats.Attributes.Id);
        Assert.NotNull(stats.Cpu);
        Assert.True(stats.Cpu.UsageCoreNanoSeconds.Value > 0, $"{id}: cpu usage 0");
        Assert.NotNull(stats.Memory);
        var workingSet = stats.Memory.WorkingSetBytes.Value;
        Assert.True(workingSet >= minWorkingSet, $"{id}: working set {workingSet} < {minWorkingSet}");
        Assert.True(workingSet <= stats.Memory.UsageBytes.Value, $"{id}: working set {workingSet} > usage {stats.Memory.UsageBytes.Value}");
        Assert.NotNull(stats.WritableLayer);
        Assert.Equal(Path.Combine(node.D.Root, "containers", id), stats.WritableLayer.FsId.Mountpoint);
        Assert.True(stats.WritableLayer.UsedBytes.Value > 0, $"{id}: writable layer of 0 bytes");
        Assert.True(stats.WritableLayer.InodesUsed.Value >= 3, $"{id}: writable layer of {stats.WritableLayer.InodesUsed.Value} inodes");
    }

    /// <summary>Execs <paramref name="cmd"/> over WebSocket (v5.channel.k8s.io, stdout and
    /// stderr) and reads every channel until the server closes: the text per channel (3: the
    /// status).</summary>
    private static async Task<Dictionary<byte, string>> StreamingExecAsync(CriClient c, string id, string[] cmd, CancellationToken ct)
    {
        var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { cmd }, Stdout = true, Stderr = true })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://", StringComparison.Ordinal)), ct);
        return await Streaming.InteractiveTests.ReadAllChannelsAsync(ws, ct);
    }

    /// <summary>Attaches (stdout and stderr, no stdin: as `kubectl attach` to a container without
    /// stdin) over WebSocket, v5.channel.k8s.io, and reads until <paramref name="count"/> whole
    /// lines arrived on stdout (and on stderr if <paramref name="stderrToo"/>): their values.</summary>
    private static async Task<(List<int> Stdout, List<int> Stderr)> AttachedCountsAsync(CriClient c, string id, int count, bool stderrToo, CancellationToken ct)
    {
        var url = (await c.Runtime.AttachAsync(new AttachRequest { ContainerId = id, Stdout = true, Stderr = true })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://", StringComparison.Ordinal)), ct);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var other = new StringBuilder();
        static int Lines(StringBuilder b) => b.ToString().Count(ch => ch == '\n');
        var buffer = new byte[64 * 1024];
        while (Lines(stdout) < count || (stderrToo && Lines(stderr) < count))
        {
            var frame = new MemoryStream();
            WebSocketReceiveResult r;
            do
            {
                try { r = await ws.ReceiveAsync(buffer, ct); }
                catch (OperationCanceledException e) { throw new TimeoutException($"{count} lines not attached in time; stdout: {stdout}; stderr: {stderr}; other channels: {other}", e); }
                frame.Write(buffer, 0, r.Count);
            }
            while (!r.EndOfMessage);
            if (r.MessageType == WebSocketMessageType.Close)
                throw new EndOfStreamException($"attach closed before {count} lines; stdout: {stdout}; stderr: {stderr}; other channels: {other}");
            var bytes = frame.ToArray();
            if (bytes.Length == 0) continue;
            (bytes[0] switch { 1 => stdout, 2 => stderr, _ => other }).Append(Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
        }
        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        static List<int> Values(StringBuilder b, int n) => [.. b.ToString().Split('\n').Take(n).Select(l => int.Parse(l.TrimStart('e'), CultureInfo.InvariantCulture))];
        return (Values(stdout, count), stderrToo ? Values(stderr, count) : []);
    }
}
