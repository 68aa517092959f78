using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

[Collection(RegistryCollection.Name)]
public class ChurnAndPortTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>The host ends of the veths plugged into this test's own bridge (other tests and
    /// test runs on the machine have their own bridges, so their pods do not count).</summary>
    private static string[] BridgePorts(string bridge) =>
        Directory.Exists($"/sys/class/net/{bridge}/brif") ? Directory.GetFileSystemEntries($"/sys/class/net/{bridge}/brif") : [];

    [Fact]
    public async Task FiftyCreateRemoveCycles_LeaveNoMountNetnsCgroupVethLeaseOrStateFile()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        for (var i = 0; i < 50; i++)
        {
            var pod = PodConfig($"churn-{i}");
            var podId = await c.RunPodAsync(pod);
            await c.StartNewAsync(podId, pod, Container("main", image, "sleep", "3600"));
            if (i == 0) Assert.Single(BridgePorts(net.Bridge)); // the pod's veth is seen where it is looked for
            if (i % 2 == 0) await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        Assert.Empty(BridgePorts(net.Bridge));
        Assert.Empty(net.Leases());
        foreach (var dir in new[] { Path.Combine(d.Root, "pods"), Path.Combine(d.Root, "containers"), Path.Combine(d.State, "pods"), Path.Combine(d.State, "c") })
            Assert.True(!Directory.Exists(dir) || Directory.GetFileSystemEntries(dir).Length == 0, $"{dir} is not empty");
        Assert.Empty(Directory.GetFiles(Path.Combine(d.Root, "cni")));
        Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Contains(d.Dir, StringComparison.Ordinal) && !l.Contains("/images/", StringComparison.Ordinal));
        // Dispose then checks processes and cgroups.
    }

    [Fact]
    public async Task HostPortMapping_AnswersOnTheHostsLoopback()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var hostPort = RegistryFixture.FreePort();
        var pod = PodConfig("hostport");
        pod.PortMappings.Add(new PortMapping { Protocol = Protocol.Tcp, ContainerPort = 8080, HostPort = hostPort });
        var podId = await c.RunPodAsync(pod);
        await c.StartNewAsync(podId, pod, Container("web", image, "sh", "-c", "mkdir -p /tmp/www && echo via-hostport > /tmp/www/index.html && httpd -f -p 8080 -h /tmp/www"));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        string body = "";
        for (var i = 0; i < 50 && body.Length == 0; i++) // httpd needs a moment to bind
        {
            try { body = await http.GetStringAsync($"http://127.0.0.1:{hostPort}/"); }
            catch (HttpRequestException) { await Task.Delay(100); }
        }
        Assert.Contains("via-hostport", body);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        // The mapping goes with the pod.
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetStringAsync($"http://127.0.0.1:{hostPort}/"));
    }
}
