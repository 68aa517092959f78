using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>A fork bomb stops at the pids limit: the runtime's `[runtime] pids_limit` on every
/// container's cgroup, or a pids.max the kubelet put on the pod's cgroup parent. The kernel's
/// own high-water mark (pids.peak) shows the limit was reached and never exceeded.</summary>
[Collection(RegistryCollection.Name)]
public class PidsLimitTests(RegistryWithImages fixture)
{
    private const int Limit = 12;
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task ForkBomb_StopsAtTheConfiguredPidsLimit_NodeStaysHealthy_ContainerStopsAndGoes()
    {
        using var d = new DaemonProcess();
        File.WriteAllText(Path.Combine(d.DropInDir, "pids.toml"), $"[runtime]\npids_limit = {Limit}\n");
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var logDir = Path.Combine(d.Dir, "logs");
        var pod = PodConfig("forkbomb", logDir);
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("bomb", image, "sh", "-c", "f(){ f|f & }; f; exec sleep 3600"));
        var cgroup = $"/sys/fs/cgroup/pids/{Path.GetFileName(d.Dir)}/{podId}/{id}";
        Assert.Equal(Limit.ToString(), File.ReadAllText($"{cgroup}/pids.max").Trim());

        // The bomb's shells report the forks the kernel refused.
        await WaitForTextAsync(Path.Combine(logDir, "bomb.log"), "can't fork");
        Assert.True(ReadLong($"{cgroup}/pids.peak") <= Limit, $"pids.peak {ReadLong($"{cgroup}/pids.peak")} over the limit {Limit}");
        Assert.True(ReadLong($"{cgroup}/pids.current") <= Limit);
        Assert.Contains("max ", File.ReadAllText($"{cgroup}/pids.events"));
        Assert.NotEqual("max 0", File.ReadAllText($"{cgroup}/pids.events").Trim());

        await AssertNodeHealthyAsync(c);
        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 0 });
        Assert.Equal(ContainerState.ContainerExited, (await c.StatusAsync(id)).State);
        Assert.False(Directory.Exists(cgroup), "the container's cgroup outlived it");
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task SleepLoop_UnderAPodParentWithPidsMax_IsBoundByTheParent()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        // As the kubelet does: the pod's cgroup, under a parent of the test's, made before the pod,
        // with the pod's pids limit on it (podPidsLimit). No runtime pids_limit is configured.
        var parent = $"{Path.GetFileName(d.Dir)}-kubepods/pod-{Guid.NewGuid():N}";
        var podCgroup = $"/sys/fs/cgroup/pids/{parent}";
        Directory.CreateDirectory(podCgroup);
        try
        {
            File.WriteAllText($"{podCgroup}/pids.max", Limit.ToString());
            var logDir = Path.Combine(d.Dir, "logs");
            var pod = PodConfig("podpids", logDir);
            pod.Linux.CgroupParent = "/" + parent;
            var podId = await c.RunPodAsync(pod);
            // busybox sh exits when a fork fails ("can't fork"): the container ends by itself, and
            // its cgroup with it. So it starts forking only once the test has read its cgroup and
            // created the go file in a directory it mounts.
            var gate = Directory.CreateDirectory(Path.Combine(d.Dir, "gate")).FullName;
            var loop = Container("loop", image, "sh", "-c", "while [ ! -e /gate/go ]; do sleep 0.1; done; while :; do sleep 1000 & done");
            loop.Mounts.Add(new Mount { ContainerPath = "/gate", HostPath = gate });
            var id = await c.StartNewAsync(podId, pod, loop);
            Assert.Equal("max", File.ReadAllText($"{podCgroup}/{id}/pids.max").Trim());
            File.WriteAllText(Path.Combine(gate, "go"), "");

            var status = await c.WaitExitedAsync(id);
            Assert.Equal(ContainerState.ContainerExited, status.State);
            Assert.NotEqual(0, status.ExitCode);
            Assert.Contains("can't fork", LogText(status.LogPath, "stderr"));
            // The pod cgroup's high-water mark: its container (and so the pod) reached the limit, never more.
            Assert.Equal(Limit, ReadLong($"{podCgroup}/pids.peak"));

            await AssertNodeHealthyAsync(c);
            await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        finally
        {
            RemoveTestParent(Path.GetFileName(d.Dir) + "-kubepods");
        }
    }

    /// <summary>The parent the test made, in every hierarchy (the daemon created the levels below
    /// it where they were missing), deepest first.</summary>
    private static void RemoveTestParent(string name)
    {
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
        {
            var root = Path.Combine(hierarchy, name);
            if (!Directory.Exists(root)) continue;
            foreach (var dir in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories).Append(root).OrderByDescending(p => p.Length))
                try { Directory.Delete(dir); } catch (IOException) { }
        }
    }

    private static long ReadLong(string file) => long.Parse(File.ReadAllText(file).Trim());
}
