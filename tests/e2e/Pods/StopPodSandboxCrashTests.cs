using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>A daemon killed in the middle of StopPodSandbox, after the pod's network was torn
/// down (its IP back in the pool): the restarted daemon must report the pod NOTREADY, never
/// READY with an address another pod may now hold, and the kubelet's retried stop and remove
/// must finish the teardown.</summary>
[Collection(RegistryCollection.Name)]
public class StopPodSandboxCrashTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task DaemonKilledMidStopPodSandbox_AfterNetworkTeardown_RestartReportsNotReady_RetryFinishesTeardown()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        d.Environment["CRIRUNTIME_FAULT"] = "stop-pod-sandbox-after-network-teardown";
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var logDir = Path.Combine(d.Dir, "pod-logs", "stopcrash");
        var pod = KubeletPod("stopcrash", logDir);
        string podId, ip;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            await c.StartNewAsync(podId, pod, Container("main", image, "sleep", "3600"));
            ip = (await PodStatusAsync(c, podId)).Network.Ip;
            Assert.Contains(ip, net.Leases());
            await Assert.ThrowsAsync<RpcException>(() => c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }).ResponseAsync);
        }
        await d.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("fault point stop-pod-sandbox-after-network-teardown", d.Output);
        Assert.DoesNotContain(ip, net.Leases()); // the crash came after CNI DEL: the IP is free again

        d.Environment.Clear();
        await d.StartAsync();
        using (var c = d.Client())
        {
            var status = await PodStatusAsync(c, podId);
            Assert.Equal(PodSandboxState.SandboxNotready, status.State);
            Assert.True(status.Network is null || status.Network.Ip.Length == 0, $"a NOTREADY pod reports IP {status.Network?.Ip}");
            var ready = await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest
            {
                Filter = new PodSandboxFilter { State = new PodSandboxStateValue { State = PodSandboxState.SandboxReady } },
            });
            Assert.DoesNotContain(ready.Items, p => p.Id == podId);

            // The kubelet's replacement pod gets an address of its own, and keeps it when the old
            // pod's teardown is finished (its CNI DEL runs again for the old attachment only).
            var pod2 = KubeletPod("stopcrash-2", Path.Combine(d.Dir, "pod-logs", "stopcrash-2"));
            var podId2 = await c.RunPodAsync(pod2);
            var ip2 = (await PodStatusAsync(c, podId2)).Network.Ip;
            var id2 = await c.StartNewAsync(podId2, pod2, Container("main", image, "sleep", "3600"));
            Assert.Equal(PodSandboxState.SandboxReady, (await PodStatusAsync(c, podId2)).State);

            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
            await Assert.ThrowsAsync<RpcException>(() => PodStatusAsync(c, podId));
            Assert.False(Directory.Exists(Path.Combine(d.Root, "pods", podId)), "the removed pod's directory survived");
            Assert.False(Directory.Exists(Path.Combine(d.State, "pods", podId)), "the removed pod's namespace pins survived");
            Assert.Equal([ip2], net.Leases());
            Assert.Contains(ip2 + "/", await c.ExecOkAsync(id2, "ip", "-4", "addr", "show", "eth0"));

            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId2 });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId2 });
            Assert.Empty(net.Leases());
        }
    }

    private static async Task<PodSandboxStatus> PodStatusAsync(CriClient c, string podId) =>
        (await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId })).Status;

    /// <summary>A PodSandboxConfig as the kubelet sends it for an ordinary pod.</summary>
    private static PodSandboxConfig KubeletPod(string name, string logDir)
    {
        var config = PodConfig(name, logDir);
        config.DnsConfig = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "e2e.svc.cluster.local", "svc.cluster.local" }, Options = { "ndots:5" } };
        config.PortMappings.Add(new PortMapping { Protocol = Protocol.Tcp, ContainerPort = 8080 });
        config.Labels.Add("io.kubernetes.pod.name", name);
        config.Labels.Add("io.kubernetes.pod.namespace", "e2e");
        config.Labels.Add("io.kubernetes.pod.uid", config.Metadata.Uid);
        config.Annotations.Add("kubernetes.io/config.source", "api");
        config.Linux.SecurityContext = new LinuxSandboxSecurityContext
        {
            NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
        };
        return config;
    }
}
