using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Observability;

/// <summary>[metrics] address: a real Prometheus (Debian's package) scrapes the daemon's listener
/// while a test drives a pod lifecycle; what its query API answers is what the test did.</summary>
[Collection(RegistryCollection.Name)]
public class PrometheusTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Prometheus_ScrapesRpcHistogramsAndStateGauges_MatchingThePodLifecycle()
    {
        var metricsAddress = $"127.0.0.1:{PrometheusServer.FreePort()}";
        using var d = new DaemonProcess();
        File.WriteAllText(Path.Combine(d.DropInDir, "50-metrics.toml"), $"[metrics]\naddress = \"{metricsAddress}\"\n");
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var prometheus = new PrometheusServer(metricsAddress);
        using var c = d.Client();

        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("scraped");
        var podId = await c.RunPodAsync(pod);
        var running = await c.StartNewAsync(podId, pod, Container("sleeper", image, "sleep", "3600"));
        var stopped = await c.StartNewAsync(podId, pod, Container("stopped", image, "sleep", "3600"));
        await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = stopped, Timeout = 1 });

        // The StopContainer request is counted once it answered: a scrape that has it also has
        // every earlier request and the state after the stop (one scrape is one moment).
        await prometheus.QueryUntilAsync("criruntime_grpc_server_duration_seconds_count{rpc_method=\"StopContainer\"}",
            r => r.Count == 1, Deadline);

        Assert.Equal(1, await Single(prometheus,
            "criruntime_grpc_server_duration_seconds_count{rpc_service=\"runtime.v1.RuntimeService\",rpc_method=\"RunPodSandbox\",grpc_status=\"OK\"}"));
        Assert.Equal(1, await Single(prometheus, "criruntime_grpc_server_duration_seconds_bucket{rpc_method=\"RunPodSandbox\",le=\"+Inf\"}"));
        Assert.True(await Single(prometheus, "criruntime_grpc_server_duration_seconds_sum{rpc_method=\"RunPodSandbox\"}") > 0);
        Assert.Equal(2, await Single(prometheus, "criruntime_grpc_server_duration_seconds_count{rpc_method=\"CreateContainer\",grpc_status=\"OK\"}"));
        Assert.Equal(2, await Single(prometheus, "criruntime_grpc_server_duration_seconds_count{rpc_method=\"StartContainer\",grpc_status=\"OK\"}"));
        Assert.Equal(1, await Single(prometheus, "criruntime_containers{state=\"running\"}"));
        Assert.Equal(1, await Single(prometheus, "criruntime_containers{state=\"exited\"}"));
        Assert.Equal(0, await Single(prometheus, "criruntime_containers{state=\"created\"}"));
        Assert.Equal(1, await Single(prometheus, "criruntime_pods{state=\"ready\"}"));
        Assert.Equal(1, await Single(prometheus, "criruntime_image_pulls_total{outcome=\"ok\"}"));
        Assert.True(await Single(prometheus, "criruntime_image_pull_bytes_total") > 100_000, "busybox's layer was downloaded");
        Assert.Equal(2, await Single(prometheus, "criruntime_shim_starts_total{outcome=\"ok\"}"));
        Assert.Equal(1, await Single(prometheus, "criruntime_cni_duration_seconds_count{cni_command=\"ADD\",cni_plugin=\"bridge\",outcome=\"ok\"}"));
        Assert.True(await Single(prometheus, "sum(dotnet_gc_collections_total)") >= 0);

        // A failed request is counted under its status code.
        await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
            await c.Runtime.ContainerStatusAsync(new ContainerStatusRequest { ContainerId = "does-not-exist" }));
        await prometheus.QueryUntilAsync("criruntime_grpc_server_duration_seconds_count{rpc_method=\"ContainerStatus\",grpc_status=\"NotFound\"}",
            r => r.Count == 1 && r[0].Value == 1, Deadline);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        await prometheus.QueryUntilAsync("sum(criruntime_containers)", r => r.Count == 1 && r[0].Value == 0, Deadline);
        Assert.Equal(0, await Single(prometheus, "sum(criruntime_pods)"));
        GC.KeepAlive(running);
    }

    private static async Task<double> Single(PrometheusServer p, string promql) =>
        Assert.Single(await p.QueryAsync(promql)).Value;
}
