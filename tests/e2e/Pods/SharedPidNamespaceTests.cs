using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>NamespaceOption pid = POD (the kubelet's shareProcessNamespace): every container of the
/// pod in one pid namespace whose pid 1 is the pod init, which lives as long as the pod; asked
/// from inside the containers with ExecSync through the real daemon.</summary>
[Collection(RegistryCollection.Name)]
public class SharedPidNamespaceTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private static PodSandboxConfig SharedPidPod(string name)
    {
        var pod = PodConfig(name);
        pod.Linux.SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Pod } };
        return pod;
    }

    private static ContainerConfig SharedPidContainer(string name, string image, params string[] command)
    {
        var config = Container(name, image, command);
        config.Linux.SecurityContext.NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Pod };
        return config;
    }

    /// <summary>The command lines of every process the container sees, from its /proc.</summary>
    private static async Task<string> Processes(CriClient c, string id) =>
        await c.ExecOkAsync(id, "sh", "-c", "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(tr '\\0' ' ' < $p/cmdline)\"; done");

    private static async Task<string> Pid1(CriClient c, string id) =>
        (await c.ExecOkAsync(id, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline")).Trim();

    private static async Task<JsonElement> VerboseInfo(CriClient c, string podId)
    {
        var status = await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId, Verbose = true });
        return JsonDocument.Parse(status.Info["info"]).RootElement;
    }

    private static bool Alive(int pid) =>
        File.Exists($"/proc/{pid}/cmdline") && File.ReadAllText($"/proc/{pid}/cmdline").Length > 0; // a zombie has none

    [Fact]
    public async Task PodPidNamespace_ContainersSeeEachOther_Pid1IsThePodInit_AndOutlivesTheFirstContainer()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = SharedPidPod("shared-pid");
        var podId = await c.RunPodAsync(pod);
        var initPid = (await VerboseInfo(c, podId)).GetProperty("podInitPid").GetInt32();
        Assert.Contains("criruntime-pod-init", File.ReadAllText($"/proc/{initPid}/cmdline"));

        // The first container has a child of its own, so that its stop shows whether the whole
        // container (its cgroup) goes, not only its main process.
        var first = await c.StartNewAsync(podId, pod, SharedPidContainer("first", image, "sh", "-c", "sleep 3601 & wait"));
        var second = await c.StartNewAsync(podId, pod, SharedPidContainer("second", image, "sleep", "3602"));

        foreach (var id in new[] { first, second })
        {
            var pid1 = await Pid1(c, id);
            Assert.Contains("criruntime-pod-init", pid1); // not the first container's process
            Assert.Contains(podId, pid1);
            var ps = await Processes(c, id);
            Assert.Contains("sleep 3601", ps);
            Assert.Contains("sleep 3602", ps);
        }
        // busybox ps agrees: the other container's process is listed by pid.
        Assert.Contains("sleep 3601", await c.ExecOkAsync(second, "ps", "-o", "pid,args"));

        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = first, Timeout = 0 });
        await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = first });
        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(second)).State);
        var after = await Processes(c, second);
        Assert.DoesNotContain("sleep 3601", after); // the first container's child went with it
        Assert.Contains("sleep 3602", after);
        Assert.Contains("criruntime-pod-init", await Pid1(c, second));

        // The namespace still takes new processes: a third container starts in it.
        var third = await c.StartNewAsync(podId, pod, SharedPidContainer("third", image, "sleep", "3603"));
        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(third)).State);
        Assert.Contains("sleep 3602", await Processes(c, third));
        Assert.Contains("criruntime-pod-init", await Pid1(c, third));

        // A container that ends on its own leaves the others running.
        var shortLived = await c.StartNewAsync(podId, pod, SharedPidContainer("short", image, "true"));
        Assert.Equal(0, (await c.WaitExitedAsync(shortLived)).ExitCode);
        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(third)).State);

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        Assert.False(Alive(initPid), "the pod init outlived StopPodSandbox");
        Assert.Equal(ContainerState.ContainerExited, (await c.StatusAsync(second)).State);
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        // Dispose: the leak check finds no process (pod init), mount (pid pin) or cgroup left.
    }

    [Fact]
    public async Task WithoutPodPidNamespace_EachContainerIsPid1OfItsOwn_AndNodeIsTheHosts()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("private-pid");
        var podId = await c.RunPodAsync(pod);
        Assert.Equal(JsonValueKind.Null, (await VerboseInfo(c, podId)).GetProperty("podInitPid").ValueKind);
        var a = await c.StartNewAsync(podId, pod, Container("a", image, "sleep", "3601"));
        var b = await c.StartNewAsync(podId, pod, Container("b", image, "sleep", "3602"));

        Assert.Equal("sleep 3601", await Pid1(c, a));
        Assert.Equal("sleep 3602", await Pid1(c, b));
        Assert.DoesNotContain("sleep 3602", await Processes(c, a));
        Assert.DoesNotContain("sleep 3601", await Processes(c, b));

        // NODE: the host's pid namespace, whose pid 1 is the host's init.
        var hostPid = Container("host", image, "sleep", "3604");
        hostPid.Linux.SecurityContext.NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Node };
        var h = await c.StartNewAsync(podId, pod, hostPid);
        Assert.Equal(File.ReadAllText("/proc/1/cmdline").Replace('\0', ' ').Trim(), await Pid1(c, h));
        Assert.Contains("sleep 3601", await Processes(c, h));

        // A container cannot ask for the pod's pid namespace when the pod has none.
        var e = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, SharedPidContainer("c", image, "sleep", "1")));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("namespace_options.pid", e.Status.Detail);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task FailedRunPodSandbox_StopsThePodInit()
    {
        // No CNI config: the network step fails after the pod init was started.
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var e = await Assert.ThrowsAsync<RpcException>(() => c.RunPodAsync(SharedPidPod("nonet")));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.State, "pods")));
        // Dispose: the leak check finds no pod init, pin or cgroup.
    }

    [Fact]
    public async Task DaemonRestart_KeepsThePodInit_AndSweepsOneWithoutAPod()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        var image = _registry.Image("busybox");
        var pod = SharedPidPod("restart-pid");
        string podId;
        int initPid;
        await d.StartAsync();
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            initPid = (await VerboseInfo(c, podId)).GetProperty("podInitPid").GetInt32();
        }
        await d.KillAsync();
        d.Environment["CRIRUNTIME_FAULT"] = "run-pod-sandbox-after-pod-init";
        await d.StartAsync();
        using (var c = d.Client())
        {
            // Crashes after starting a second pod's init, before that pod was recorded.
            await Assert.ThrowsAsync<RpcException>(() => c.RunPodAsync(SharedPidPod("half-made")));
        }
        await d.WaitForExitAsync(TimeSpan.FromSeconds(30));
        var orphans = PodInits(d.State).Where(p => p != initPid).ToList();
        Assert.Single(orphans);

        d.Environment.Clear();
        await d.StartAsync();
        Assert.False(Alive(orphans[0]), "the pod init of the half-made pod survived the restart");
        Assert.Contains("recovery: removed the pod init of half-created pod", d.Output);
        Assert.True(Alive(initPid), "the recorded pod's init did not survive the restart");
        using (var c = d.Client())
        {
            var status = await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId });
            Assert.Equal(PodSandboxState.SandboxReady, status.Status.State);
            var id = await c.StartNewAsync(podId, pod, SharedPidContainer("after", image, "sleep", "3600"));
            Assert.Contains("criruntime-pod-init", await Pid1(c, id));
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        Assert.False(Alive(initPid));
    }

    private static List<int> PodInits(string stateDir)
    {
        var pids = new List<int>();
        foreach (var procDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(procDir), out var pid)) continue;
            try
            {
                var args = File.ReadAllText(Path.Combine(procDir, "cmdline")).Split('\0');
                if (args.Length >= 3 && args[0].EndsWith("criruntime-pod-init", StringComparison.Ordinal) && args[2] == stateDir) pids.Add(pid);
            }
            catch (IOException) { }
        }
        return pids;
    }
}
