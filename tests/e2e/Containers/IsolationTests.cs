using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>What a container sees from the inside, asked with ExecSync through the real daemon:
/// its namespaces, security settings and cgroup limits, as the CRI config asked for them.</summary>
[Collection(RegistryCollection.Name)]
public class IsolationTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private static async Task<(int Code, string Out, string Err)> Exec(CriClient c, string id, params string[] cmd)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { cmd }, Timeout = 30 });
        return (r.ExitCode, r.Stdout.ToStringUtf8(), r.Stderr.ToStringUtf8());
    }

    private static string StatusField(string status, string field) =>
        status.Split('\n').First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim();

    [Fact]
    public async Task SecurityContext_IsWhatTheContainerSees()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("secure");
        var podId = await c.RunPodAsync(pod);

        var config = Container("probe", image, "sleep", "3600");
        config.Linux.SecurityContext = new LinuxContainerSecurityContext
        {
            NoNewPrivs = true,
            RunAsUser = new Int64Value { Value = 1000 },
            ReadonlyRootfs = true,
            Capabilities = new Capability { DropCapabilities = { "ALL" }, AddCapabilities = { "NET_BIND_SERVICE" } },
            Seccomp = new SecurityProfile { ProfileType = SecurityProfile.Types.ProfileType.RuntimeDefault },
        };
        var id = await c.StartNewAsync(podId, pod, config);

        var (_, status, _) = await Exec(c, id, "cat", "/proc/self/status");
        Assert.Equal("1", StatusField(status, "NoNewPrivs"));
        Assert.Equal("2", StatusField(status, "Seccomp")); // filter mode
        Assert.Equal("0000000000000400", StatusField(status, "CapBnd")); // NET_BIND_SERVICE (bit 10) only
        Assert.StartsWith("1000\t", StatusField(status, "Uid"));
        Assert.StartsWith("1000\t", StatusField(status, "Gid")); // app's primary group from the image's /etc/passwd

        Assert.Equal("secure", (await Exec(c, id, "hostname")).Out.Trim());
        var (_, ps, _) = await Exec(c, id, "ps", "-o", "pid,comm");
        Assert.Contains("    1 sleep", ps.Replace("\t", " ")); // its own pid namespace: sleep is pid 1
        // Namespaces differ from the host's.
        foreach (var ns in new[] { "net", "pid", "mnt", "uts", "ipc" })
            Assert.NotEqual(new FileInfo($"/proc/self/ns/{ns}").LinkTarget, (await Exec(c, id, "readlink", $"/proc/self/ns/{ns}")).Out.Trim());

        var (code, _, err) = await Exec(c, id, "touch", "/x");
        Assert.NotEqual(0, code); // read-only root
        Assert.Contains("Read-only file system", err);
        Assert.Equal("", (await Exec(c, id, "cat", "/proc/kcore")).Out); // masked
        // The default seccomp profile refuses unshare even where capabilities would not.
        var (unshareCode, _, unshareErr) = await Exec(c, id, "unshare", "-n", "true");
        Assert.NotEqual(0, unshareCode);
        Assert.Contains("Operation not permitted", unshareErr);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task DroppedNetRaw_MakesRawSocketsFail()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("raw");
        var podId = await c.RunPodAsync(pod);
        var gw = net.Subnet[..^4] + "1";
        var with = await c.StartNewAsync(podId, pod, Container("with", image, "sleep", "3600"));
        var withoutConfig = Container("without", image, "sleep", "3600");
        withoutConfig.Linux.SecurityContext.Capabilities = new Capability { DropCapabilities = { "NET_RAW" } };
        var without = await c.StartNewAsync(podId, pod, withoutConfig);

        var ok = await Exec(c, with, "ping", "-c", "1", "-W", "5", gw);
        Assert.True(ok.Code == 0, $"ping with NET_RAW: {ok.Out} {ok.Err}");
        var (code, _, err) = await Exec(c, without, "ping", "-c", "1", "-W", "5", gw);
        Assert.NotEqual(0, code);
        Assert.Contains("permission denied", err, StringComparison.OrdinalIgnoreCase);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task MemoryHog_OverItsLimit_EndsOomKilled()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("oom");
        var podId = await c.RunPodAsync(pod);
        var config = Container("hog", image, "tail", "/dev/zero"); // tail keeps the endless "line" in memory
        config.Linux.Resources.MemoryLimitInBytes = 32 * 1024 * 1024;
        var id = await c.StartNewAsync(podId, pod, config);
        var status = await c.WaitExitedAsync(id);
        Assert.Equal("OOMKilled", status.Reason);
        Assert.Equal(137, status.ExitCode);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task CpuQuota_HoldsABusyLoopNearItsShare_AndUpdateChangesTheCgroupLive()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("cpu");
        var podId = await c.RunPodAsync(pod);
        var config = Container("spin", image, "sh", "-c", "while :; do :; done");
        config.Linux.Resources.CpuPeriod = 100_000;
        config.Linux.Resources.CpuQuota = 20_000; // 0.2 CPU
        var id = await c.StartNewAsync(podId, pod, config);

        // A measurement window, not synchronisation: CPU time used over wall time.
        var share = await MeasureCpuShare(c, id, TimeSpan.FromSeconds(3));
        Assert.InRange(share, 0.10, 0.30);

        await c.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest
        {
            ContainerId = id,
            Linux = new LinuxContainerResources { CpuPeriod = 100_000, CpuQuota = 50_000, MemoryLimitInBytes = 64 * 1024 * 1024 },
        });
        var podCgroup = $"{Path.GetFileName(d.Dir)}/{podId}/{id}";
        Assert.Equal("50000", File.ReadAllText($"/sys/fs/cgroup/cpu/{podCgroup}/cpu.cfs_quota_us").Trim());
        Assert.Equal((64 * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText($"/sys/fs/cgroup/memory/{podCgroup}/memory.limit_in_bytes").Trim());
        Assert.Equal(64 * 1024 * 1024, (await c.StatusAsync(id)).Resources.Linux.MemoryLimitInBytes);
        share = await MeasureCpuShare(c, id, TimeSpan.FromSeconds(3));
        Assert.InRange(share, 0.35, 0.65);

        var stats = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats;
        Assert.True(stats.Memory.WorkingSetBytes.Value > 0);
        var podStats = (await c.Runtime.PodSandboxStatsAsync(new PodSandboxStatsRequest { PodSandboxId = podId })).Stats;
        Assert.True(podStats.Linux.Cpu.UsageCoreNanoSeconds.Value >= stats.Cpu.UsageCoreNanoSeconds.Value);
        Assert.Equal("eth0", podStats.Linux.Network.DefaultInterface.Name);
        Assert.Single(podStats.Linux.Containers);

        var bad = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest
        {
            ContainerId = id,
            Linux = new LinuxContainerResources { CpuQuota = 5 },
        }));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    private static async Task<double> MeasureCpuShare(CriClient c, string id, TimeSpan window)
    {
        var first = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats.Cpu;
        await Task.Delay(window);
        var second = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats.Cpu;
        return (double)(second.UsageCoreNanoSeconds.Value - first.UsageCoreNanoSeconds.Value) / (second.Timestamp - first.Timestamp);
    }

    [Fact]
    public async Task TwoContainersInAPod_ShareLocalhostAndIpc_AndThePodIpAnswersFromTheHost()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("duo");
        var podId = await c.RunPodAsync(pod);
        var server = await c.StartNewAsync(podId, pod, Container("server", image, "sh", "-c", "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && httpd -f -p 8080 -h /tmp/www"));
        var client = await c.StartNewAsync(podId, pod, Container("client", image, "sleep", "3600"));

        string body = "";
        for (var i = 0; i < 50 && !body.Contains("hello-from-pod"); i++) // the server needs a moment to bind
            // nc, not wget: static busybox's wget resolves "http" through NSS, which the image lacks.
            body = (await Exec(c, client, "sh", "-c", "printf 'GET / HTTP/1.0\r\n\r\n' | nc 127.0.0.1 8080")).Out;
        Assert.True(body.Contains("hello-from-pod"), $"no answer on localhost; server log: {File.ReadAllText((await c.StatusAsync(server)).LogPath)}; netstat: {(await Exec(c, server, "netstat", "-ltn"))}");
        Assert.Equal((await Exec(c, server, "readlink", "/proc/self/ns/ipc")).Out, (await Exec(c, client, "readlink", "/proc/self/ns/ipc")).Out);
        Assert.NotEqual((await Exec(c, server, "readlink", "/proc/self/ns/mnt")).Out, (await Exec(c, client, "readlink", "/proc/self/ns/mnt")).Out);

        var ip = (await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId })).Status.Network.Ip;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Contains("hello-from-pod", await http.GetStringAsync($"http://{ip}:8080/"));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
