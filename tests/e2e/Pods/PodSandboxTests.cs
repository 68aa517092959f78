using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>Pods over CRI: pinned namespaces without a pause process, real CNI (Debian's bridge,
/// host-local, loopback, portmap), persistence and idempotent teardown.</summary>
public class PodSandboxTests
{
    private static PodSandboxConfig Pod(string name, string uid = "", uint attempt = 0) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "e2e", Uid = uid.Length > 0 ? uid : Guid.NewGuid().ToString(), Attempt = attempt },
        Hostname = name + "-host",
        Labels = { ["app"] = name },
        DnsConfig = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "e2e.svc.cluster.local" }, Options = { "ndots:5" } },
        Linux = new LinuxPodSandboxConfig(),
    };

    private static async Task<JsonElement> VerboseInfo(CriClient c, string id)
    {
        var s = await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = id, Verbose = true });
        return JsonDocument.Parse(s.Info["info"]).RootElement.Clone();
    }

    [Fact]
    public async Task RunPodSandbox_PinsNamespaces_ConnectsTheNetwork_WithoutAnyProcess()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var config = Pod("web");
        config.Linux.Sysctls["net.ipv4.ip_unprivileged_port_start"] = "80";
        var id = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config })).PodSandboxId;

        var status = (await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = id })).Status;
        Assert.Equal(PodSandboxState.SandboxReady, status.State);
        Assert.Equal("web", status.Metadata.Name);
        Assert.StartsWith(net.Subnet[..^4], status.Network.Ip);
        Assert.Equal("web", status.Labels["app"]);

        var info = await VerboseInfo(c, id);
        var netns = info.GetProperty("netNs").GetString()!;
        var utsns = info.GetProperty("utsNs").GetString()!;
        Assert.True(Ns.IsMounted(netns));
        Assert.True(Ns.IsMounted(info.GetProperty("ipcNs").GetString()!));
        // From inside the pinned namespaces: the pod's address on eth0, its hostname and sysctl.
        Assert.Contains(status.Network.Ip + "/24", Ns.Run("net", netns, "ip", "-4", "addr", "show", "eth0"));
        Assert.Equal("web-host", Ns.Run("uts", utsns, "hostname"));
        Assert.Equal("80", Ns.Run("net", netns, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"));
        Assert.NotEqual("80", File.ReadAllText("/proc/sys/net/ipv4/ip_unprivileged_port_start").Trim());
        // The pod answers from the host across the bridge.
        Shell.Run("ping", "-c", "1", "-W", "5", status.Network.Ip);
        // No process was needed to hold the pod: nothing started from the daemon's directories.
        var resolv = File.ReadAllText(Path.Combine(info.GetProperty("dir").GetString()!, "resolv.conf"));
        Assert.Contains("nameserver 10.96.0.10", resolv);
        Assert.Contains("search e2e.svc.cluster.local", resolv);

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = id });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
    }

    [Fact]
    public async Task RunPodSandbox_Retried_ReturnsTheSamePod()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var config = Pod("retry", uid: "uid-retry");
        var first = c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config }).ResponseAsync;
        var second = c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config }).ResponseAsync;
        var ids = await Task.WhenAll(first, second);
        Assert.Equal(ids[0].PodSandboxId, ids[1].PodSandboxId);
        var third = await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config });
        Assert.Equal(ids[0].PodSandboxId, third.PodSandboxId);
        // A new attempt is a new pod.
        var next = await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod("retry", uid: "uid-retry", attempt: 1) });
        Assert.NotEqual(ids[0].PodSandboxId, next.PodSandboxId);
        Assert.Equal(2, (await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items.Count);
        foreach (var id in new[] { ids[0].PodSandboxId, next.PodSandboxId })
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
    }

    [Fact]
    public async Task StopAndRemove_AreIdempotent_AndLeaveNothingBehind()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var id = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod("gone") })).PodSandboxId;
        var info = await VerboseInfo(c, id);
        Assert.Single(net.Leases());

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = id });
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = id });
        Assert.Equal(PodSandboxState.SandboxNotready, (await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = id })).Status.State);
        Assert.Empty(net.Leases());
        Assert.False(Ns.IsMounted(info.GetProperty("netNs").GetString()!));

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = id });
        var e = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = id }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.False(Ns.IsMounted(info.GetProperty("ipcNs").GetString()!));
        Assert.False(Directory.Exists(info.GetProperty("dir").GetString()!));
        Assert.Empty(Directory.GetFiles(Path.Combine(d.Root, "cni")));
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.State, "pods")));
    }

    [Fact]
    public async Task BadInput_IsRefused_NamingTheField_AndFailedCreate_RollsBack()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var noName = Pod("x");
        noName.Metadata.Name = "";
        var e1 = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = noName }));
        Assert.Equal(StatusCode.InvalidArgument, e1.StatusCode);
        Assert.Contains("config.metadata.name", e1.Status.Detail);

        var badSysctl = Pod("x");
        badSysctl.Linux.Sysctls["vm.swappiness"] = "1";
        var e2 = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = badSysctl }));
        Assert.Equal(StatusCode.InvalidArgument, e2.StatusCode);
        Assert.Contains("vm.swappiness", e2.Status.Detail);

        // No CNI config in the daemon's dir: the network step fails after the namespaces were
        // pinned; every earlier step is undone.
        var e3 = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod("nonet") }));
        Assert.Equal(StatusCode.FailedPrecondition, e3.StatusCode);
        Assert.Empty((await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items);
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.State, "pods")));
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.Root, "pods")));
        Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Contains(d.Dir, StringComparison.Ordinal));

        var e4 = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = "feedface" }));
        Assert.Equal(StatusCode.NotFound, e4.StatusCode);
        Assert.Contains("feedface", e4.Status.Detail);
    }

    [Fact]
    public async Task HostNetworkPod_UsesTheHostNamespaces_AndNeedsNoCni()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var config = Pod("hostnet");
        config.Linux.SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Node, Ipc = NamespaceMode.Node } };
        var id = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config })).PodSandboxId;
        var info = await VerboseInfo(c, id);
        Assert.Equal(JsonValueKind.Null, info.GetProperty("netNs").ValueKind);
        Assert.Equal(JsonValueKind.Null, info.GetProperty("ipcNs").ValueKind);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
    }

    [Fact]
    public async Task DaemonKilled_AndRestarted_KeepsEveryPod()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        string a, b;
        using (var c = d.Client())
        {
            a = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod("a") })).PodSandboxId;
            b = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod("b") })).PodSandboxId;
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = b });
        }
        await d.KillAsync();
        await d.StartAsync();
        using (var c = d.Client())
        {
            var ready = await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest { Filter = new PodSandboxFilter { State = new PodSandboxStateValue { State = PodSandboxState.SandboxReady } } });
            Assert.Equal([a], ready.Items.Select(p => p.Id));
            var byLabel = await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest { Filter = new PodSandboxFilter { LabelSelector = { ["app"] = "b" } } });
            Assert.Equal([b], byLabel.Items.Select(p => p.Id));
            var status = (await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = a[..12] })).Status;
            Assert.Equal(a, status.Id);
            Assert.False(string.IsNullOrEmpty(status.Network?.Ip));
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = a });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = b });
        }
        Assert.Empty(net.Leases());
    }

    [Fact]
    public async Task StreamPodSandboxes_StreamsWhatListPodSandboxReturns_WithFilters()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var ids = new List<string>();
        foreach (var name in new[] { "s1", "s2", "s3" })
            ids.Add((await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod(name) })).PodSandboxId);

        async Task<List<string>> Stream(PodSandboxFilter? filter)
        {
            var got = new List<string>();
            using var call = c.Runtime.StreamPodSandboxes(new StreamPodSandboxesRequest { Filter = filter });
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
                got.AddRange(call.ResponseStream.Current.PodSandboxes.Select(p => p.Id));
            return got;
        }
        Assert.Equal(ids, await Stream(null));
        Assert.Equal([ids[1]], await Stream(new PodSandboxFilter { LabelSelector = { ["app"] = "s2" } }));
        foreach (var id in ids) await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
        Assert.Empty(await Stream(null));
    }

    [Fact]
    public async Task PodResources_LimitThePodCgroup_AndUpdatePodSandboxResourcesChangesThemLive()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var config = Pod("sized");
        config.Linux.Resources = new LinuxContainerResources { MemoryLimitInBytes = 64 * 1024 * 1024, CpuPeriod = 100_000, CpuQuota = 50_000 };
        var id = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config })).PodSandboxId;
        var cgroup = $"{Path.GetFileName(d.Dir)}/{id}";
        Assert.Equal("67108864", File.ReadAllText($"/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes").Trim());
        Assert.Equal("50000", File.ReadAllText($"/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_quota_us").Trim());

        await c.Runtime.UpdatePodSandboxResourcesAsync(new UpdatePodSandboxResourcesRequest
        {
            PodSandboxId = id,
            Resources = new LinuxContainerResources { MemoryLimitInBytes = 128 * 1024 * 1024 },
        });
        Assert.Equal("134217728", File.ReadAllText($"/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes").Trim());
        var bad = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.UpdatePodSandboxResourcesAsync(new UpdatePodSandboxResourcesRequest
        {
            PodSandboxId = id,
            Resources = new LinuxContainerResources { CpuQuota = 7 },
        }));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Contains("cpu_quota", bad.Status.Detail);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
        Assert.False(Directory.Exists($"/sys/fs/cgroup/memory/{cgroup}"));
    }
}
