using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>ListMetricDescriptors / ListPodSandboxMetrics / StreamPodSandboxMetrics: the
/// cAdvisor-style metrics the kubelet scrapes when it takes pod and container stats from CRI.</summary>
[Collection(RegistryCollection.Name)]
public class MetricsTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task PodSandboxMetrics_BusyContainerCpuGrows_MemoryPlausible_EveryNameDescribed()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("metered");
        var podId = await c.RunPodAsync(pod);
        var config = Container("spin", image, "sh", "-c", "while :; do :; done");
        config.Linux.Resources.MemoryLimitInBytes = 64 * 1024 * 1024;
        var id = await c.StartNewAsync(podId, pod, config);

        var descriptors = (await c.Runtime.ListMetricDescriptorsAsync(new ListMetricDescriptorsRequest())).Descriptors.ToDictionary(x => x.Name);
        Assert.Contains("container_cpu_usage_seconds_total", descriptors.Keys);
        Assert.Contains("container_memory_working_set_bytes", descriptors.Keys);

        var first = await ContainerSamples(c, podId, id);
        // A measurement window, not synchronisation: the spinning container uses CPU meanwhile.
        await Task.Delay(TimeSpan.FromSeconds(3));
        var all = (await c.Runtime.ListPodSandboxMetricsAsync(new ListPodSandboxMetricsRequest())).PodMetrics;
        var podMetrics = Assert.Single(all, p => p.PodSandboxId == podId);
        var second = Assert.Single(podMetrics.ContainerMetrics, m => m.ContainerId == id).Metrics;

        Assert.True(Value(second, "container_cpu_usage_seconds_total") >= Value(first, "container_cpu_usage_seconds_total") + 1,
            $"cpu seconds {Value(first, "container_cpu_usage_seconds_total")} -> {Value(second, "container_cpu_usage_seconds_total")} over 3 s of spinning");
        Assert.Equal(MetricType.Counter, second.First(m => m.Name == "container_cpu_usage_seconds_total").MetricType);
        var workingSet = Value(second, "container_memory_working_set_bytes");
        Assert.InRange(workingSet, 1UL, Value(second, "container_memory_usage_bytes"));
        Assert.Equal(MetricType.Gauge, second.First(m => m.Name == "container_memory_working_set_bytes").MetricType);
        Assert.Equal(64UL * 1024 * 1024, Value(second, "container_spec_memory_limit_bytes"));
        Assert.InRange(Value(second, "container_processes"), 1UL, 10UL);
        Assert.True(Value(second, "container_start_time_seconds") > 1_600_000_000);

        // The pod level: its cgroup (all containers) and its network namespace, per interface.
        var podLevel = podMetrics.Metrics;
        Assert.True(Value(podLevel, "container_cpu_usage_seconds_total") >= Value(second, "container_cpu_usage_seconds_total"));
        var rx = Assert.Single(podLevel, m => m.Name == "container_network_receive_bytes_total");
        Assert.Equal("eth0", rx.LabelValues[^1]);

        // Every sample is described, with as many label values as its descriptor has keys.
        foreach (var m in podLevel.Concat(second))
        {
            Assert.True(descriptors.TryGetValue(m.Name, out var desc), $"{m.Name} is emitted but not described");
            Assert.Equal(desc!.LabelKeys.Count, m.LabelValues.Count);
        }
        var labels = descriptors["container_cpu_usage_seconds_total"].LabelKeys.Zip(second.First(m => m.Name == "container_cpu_usage_seconds_total").LabelValues).ToDictionary();
        Assert.Equal("spin", labels["container"]);
        Assert.Equal(id, labels["id"]);
        Assert.Equal("metered", labels["pod"]);
        Assert.Equal("e2e", labels["namespace"]);

        using var stream = c.Runtime.StreamPodSandboxMetrics(new StreamPodSandboxMetricsRequest());
        var streamed = new List<PodSandboxMetrics>();
        while (await stream.ResponseStream.MoveNext(CancellationToken.None)) streamed.AddRange(stream.ResponseStream.Current.PodSandboxMetrics);
        Assert.Single(streamed, p => p.PodSandboxId == podId);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    private static async Task<IReadOnlyList<Metric>> ContainerSamples(CriClient c, string podId, string id)
    {
        var all = (await c.Runtime.ListPodSandboxMetricsAsync(new ListPodSandboxMetricsRequest())).PodMetrics;
        return Assert.Single(Assert.Single(all, p => p.PodSandboxId == podId).ContainerMetrics, m => m.ContainerId == id).Metrics;
    }

    private static ulong Value(IEnumerable<Metric> metrics, string name) => Assert.Single(metrics, m => m.Name == name).Value.Value;
}
