using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.PartitionView;

/// <summary>`criruntime beancounters`: which limit a partition hit, from the kernel's own
/// counters, in the layout of OpenVZ's /proc/user_beancounters.</summary>
[Collection(RegistryCollection.Name)]
public class BeancounterTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>held, maxheld, limit, failcnt of <paramref name="resource"/> in the block of the
    /// container <paramref name="id"/> ("-" where absent, "max" unlimited).</summary>
    private static string[] Row(string report, string id, string resource)
    {
        var lines = report.Split('\n');
        var start = Array.FindIndex(lines, l => l.StartsWith($"container {id} ", StringComparison.Ordinal));
        Assert.True(start >= 0, report);
        var row = lines.Skip(start + 1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).First(f => f[0] == resource);
        return row[1..5];
    }

    private static async Task<string> ReportAsync(DaemonProcess d, string podId)
    {
        var (code, stdout, stderr) = await DaemonProcess.RunCliAsync("beancounters", podId, "--config", d.ConfigFile, "--root", d.Root, "--state", d.State, "--socket", d.Socket);
        Assert.True(code == 0, stderr);
        return stdout;
    }

    /// <summary>A daemon limiting every container to 64 pids (plus <paramref name="config"/>) and a
    /// fork bomb in a pod of its own, once it has hit the limit.</summary>
    private static async Task<(string PodId, string Id)> StartForkBombAsync(TestNode node, string config)
    {
        File.WriteAllText(Path.Combine(node.D.DropInDir, "pids.toml"), "[runtime]\npids_limit = 64\n" + config);
        await node.D.RestartAsync();
        var logDir = Path.Combine(node.D.Dir, "logs");
        var pod = PodConfig("bomb", logDir);
        var podId = await node.C.RunPodAsync(pod);
        node.Track(podId);
        var id = await node.C.StartNewAsync(podId, pod, Container("bomb", node.Busybox, "sh", "-c", "f(){ f|f & }; f; exec sleep 3600"));
        await WaitForTextAsync(Path.Combine(logDir, "bomb.log"), "can't fork");
        return (podId, id);
    }

    [Fact]
    public async Task AForkBomb_ShowsNumprocAtItsLimit_WithAFailCount()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, id) = await StartForkBombAsync(node, "");

        var report = await ReportAsync(node.D, podId);
        var numproc = Row(report, id, "numproc");

        if ((numproc[1], numproc[2]) != ("64", "64"))
        {
            // Say what the container was doing (it failed once in CI with "-" for both: its cgroup gone).
            var status = await node.C.StatusAsync(id);
            Assert.Fail($"numproc {string.Join(' ', numproc)}; container {status.State} exit {status.ExitCode} {status.Reason} {status.Message}\n{report}\n{node.D.Output}");
        }
        Assert.True(long.Parse(numproc[3]) > 0, $"failcnt {numproc[3]}");
        await AssertNodeHealthyAsync(node.C);
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 0 });
    }

    [Fact]
    public async Task AForkBombsPidsFailCount_IsSeenThroughListPodSandboxMetrics_AndTheMetricsEndpoint()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var metricsAddress = $"127.0.0.1:{Observability.PrometheusServer.FreePort()}";
        var (podId, id) = await StartForkBombAsync(node, $"[metrics]\naddress = \"{metricsAddress}\"\n");

        // CRI: the container's samples, by name and resource label.
        var all = (await node.C.Runtime.ListPodSandboxMetricsAsync(new ListPodSandboxMetricsRequest())).PodMetrics;
        var samples = Assert.Single(Assert.Single(all, p => p.PodSandboxId == podId).ContainerMetrics, m => m.ContainerId == id).Metrics;
        ulong? Cri(string name, string resource) => samples.SingleOrDefault(m => m.Name == name && m.LabelValues[^1] == resource)?.Value.Value;
        Assert.Equal(64UL, Cri("container_beancounter_limit", "numproc"));
        Assert.Equal(64UL, Cri("container_beancounter_maxheld", "numproc"));
        Assert.True(Cri("container_beancounter_failcnt", "numproc") > 0, $"CRI numproc failcnt {Cri("container_beancounter_failcnt", "numproc")}");
        var descriptor = (await node.C.Runtime.ListMetricDescriptorsAsync(new ListMetricDescriptorsRequest())).Descriptors.Single(d => d.Name == "container_beancounter_failcnt");
        Assert.Equal("resource", descriptor.LabelKeys[^1]);
        // No cgroup counts open files: no sample, not a 0.
        Assert.DoesNotContain(samples, m => m.LabelValues[^1] == "numfile");

        // Prometheus text from the metrics listener, read at this scrape.
        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://{metricsAddress}/metrics");
        double Scraped(string name) => double.Parse(Assert.Single(text.Split('\n'), l => l.StartsWith(name + "{", StringComparison.Ordinal)
            && l.Contains("container=\"bomb\"", StringComparison.Ordinal) && l.Contains("resource=\"numproc\"", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(64, Scraped("criruntime_beancounter_limit"));
        Assert.True(Scraped("criruntime_beancounter_failcnt_total") > 0, text);
        Assert.DoesNotContain("resource=\"numfile\"", text);
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 0 });
    }

    [Fact]
    public async Task AMemoryHog_ShowsPhyspagesFailCount_AndAnOomKill()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, pod) = await node.RunPodAsync("hog");
        var config = Container("hog", node.Busybox, "sleep", "3600");
        config.Linux = new LinuxContainerConfig { Resources = new LinuxContainerResources { MemoryLimitInBytes = 32 << 20 } };
        var id = await node.C.StartNewAsync(podId, pod, config);

        // A process that takes memory until the kernel kills it; the container's own goes on.
        var hog = await node.C.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "tail /dev/zero" }, Timeout = 60 });
        Assert.NotEqual(0, hog.ExitCode);

        var report = await ReportAsync(node.D, podId);
        var phys = Row(report, id, "physpages");
        Assert.Equal((32 << 20).ToString(), phys[2]);
        Assert.True(long.Parse(phys[3]) > 0, $"physpages failcnt {phys[3]}\n{report}");
        Assert.True(long.Parse(Row(report, id, "oomkills")[0]) >= 1, report);
        Assert.Contains("not accounted", report); // numfile: no cgroup counter, said so
    }
}
