using System.Net;
using System.Net.Sockets;
using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>The pod keeps its IP and its TCP connections across a migration (docs/migration.md,
/// "Keeping the pod's IP and connections"): two real daemons in network namespaces of their own
/// (<see cref="NodeNetwork"/>), a client outside both.</summary>
public partial class MigrationTests
{
    private const int EchoPort = 7000;

    /// <summary>busybox nc accepts one connection and execs cat on it: one process, its socket
    /// an established TCP connection, echoing what it reads.
    /// <paramref name="loop"/>: a shell runs it again each time it ends (a copy restored with its
    /// connection closed keeps running).</summary>
    private ContainerConfig EchoContainer(KubePod pod, string imageId, bool loop = false)
    {
        var port = EchoPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var c = Kubelet.Container(pod, "echo", imageId, Umoci, loop ? ["sh", "-c", $"while :; do nc -l -p {port} -e cat; done"] : ["nc", "-l", "-p", port, "-e", "cat"]);
        c.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 0 };
        return c;
    }

    /// <summary>Sends <paramref name="line"/> and reads its echo: a reset or an end of stream fails.</summary>
    private static async Task<string> EchoAsync(Socket client, string line)
    {
        var bytes = Encoding.ASCII.GetBytes(line);
        await client.SendAsync(bytes, SocketFlags.None);
        return await ReadAsync(client, bytes.Length, line.Trim());
    }

    /// <summary>The next <paramref name="length"/> bytes (the echo of <paramref name="what"/>).</summary>
    private static async Task<string> ReadAsync(Socket client, int length, string what)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var buffer = new byte[length];
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await client.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
            if (n == 0) throw new IOException($"the connection was closed after {read} bytes of the echo of '{what}'");
            read += n;
        }
        return Encoding.ASCII.GetString(buffer);
    }

    private static async Task<string> PodIpAsync(MigrationNode n, string podId) =>
        (await n.C.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId })).Status.Network.Ip;

    /// <summary>An echo pod on <paramref name="n"/> (node A of <paramref name="net"/>), routed
    /// there from outside, and a client connected to it from outside that got one echo.</summary>
    private async Task<(KubePod Pod, string PodId, string Ip, Socket Client)> EchoPodAsync(MigrationNode n, NodeNetwork net, string name, bool loop = false)
    {
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(n.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await n.C.RunPodAsync(sandbox);
        n.Node.Track(podId);
        var id = await n.C.StartNewAsync(podId, sandbox, EchoContainer(pod, await ImageIdAsync(n), loop));
        var ip = await PodIpAsync(n, podId);
        net.RoutePod(ip, net.AddressA);
        // Listening (port 7000 = 0x1B58, state 0A; nc listens on IPv6, v4-mapped), seen from inside:
        // then the client connects.
        await n.C.ExecOkAsync(id, "sh", "-c", "until cat /proc/net/tcp /proc/net/tcp6 | grep -q ':1B58 [0-9A-F]*:0000 0A'; do sleep 0.05; done");
        var client = net.OutsideSocket();
        await client.ConnectAsync(IPAddress.Parse(ip), EchoPort);
        Assert.Equal("before\n", await EchoAsync(client, "before\n"));
        return (pod, podId, ip, client);
    }

    /// <summary>PrepareTarget on <paramref name="target"/> for the echo pod, keeping its address.</summary>
    private async Task<string> PrepareEchoAsync(MigrationNode target, KubePod pod, string ip, string migrationId)
    {
        var on = On(target, pod);
        var prepared = await PrepareAsync(target, new PrepareTargetRequest
        {
            MigrationId = migrationId,
            Config = Kubelet.Sandbox(on),
            ContainerConfigs = { EchoContainer(on, await ImageIdAsync(target)) },
            PodIps = { ip },
        });
        Assert.Equal(ip, await PodIpAsync(target, prepared));
        return prepared;
    }

    [Theory]
    [InlineData("cold")]
    [InlineData("lazy")]
    public async Task Migration_KeepsThePodsIp_AndAClientOutsideBothNodesKeepsItsTcpConnection(string mode)
    {
        // Lazy: CRIU's page pipes need fs.pipe-max-size 4 MiB (set for the test, restored after).
        using var pipes = mode == "lazy" ? PipeMaxSize.Set(PipeMaxSize.Lazy) : null;
        await using var nodes = await TwoNodes.StartInNamespacesAsync(_registry, Umoci);
        var (a, b, net) = (nodes.Source, nodes.Target, nodes.Network!);
        var (pod, podId, ip, client) = await EchoPodAsync(a, net, $"echo-{mode}");
        using var _ = client;
        var prepared = await PrepareEchoAsync(b, pod, ip, $"m-tcp-{mode}");

        var seen = await MigrateAsync(a, $"m-tcp-{mode}", podId, b.Address, mode, allowNewIp: false);

        var done = seen[^1];
        Assert.True(done.Phase == "DONE", $"{done.Phase}: {done.Error}");
        Assert.True(done.KeptIp);
        Assert.Equal(ContainerState.ContainerRunning, Assert.Single(await ContainersAsync(b, prepared)).State);
        // Sent while outside still routes the pod's IP to A: the source's lock drops it (no copy
        // that will not run again acknowledges it), and the client retransmits it later.
        var moved = Encoding.ASCII.GetBytes("moved\n");
        await client.SendAsync(moved, SocketFlags.None);
        // The switch-over a CNI plugin or BGP would make: outside now routes the pod's IP to B.
        net.RoutePod(ip, net.AddressB);
        // Commit kills the frozen source and removes its pod, before B said anything on the
        // connection: the source's sockets, closed, must not send the client their FIN or RST.
        Assert.Equal("COMMITTED", (await a.Migration.CommitAsync(new CommitRequest { MigrationId = $"m-tcp-{mode}" })).Phase);
        Assert.Empty(await PodsAsync(a));
        Assert.Equal("moved\n", await ReadAsync(client, moved.Length, "moved"));
        Assert.Equal("after commit\n", await EchoAsync(client, "after commit\n"));
    }

    [Fact]
    public async Task AbortOfAMigrationThatKeptTheIp_LiftsTheNetworkLock_AndTheConnectionGoesOnWithTheSource()
    {
        await using var nodes = await TwoNodes.StartInNamespacesAsync(_registry, Umoci);
        var (a, b, net) = (nodes.Source, nodes.Target, nodes.Network!);
        var (pod, podId, ip, client) = await EchoPodAsync(a, net, "echo-abort");
        using var _ = client;
        await PrepareEchoAsync(b, pod, ip, "m-tcp-abort");
        var done = (await MigrateAsync(a, "m-tcp-abort", podId, b.Address, allowNewIp: false))[^1];
        Assert.True(done.Phase == "DONE" && done.KeptIp, $"{done.Phase}: {done.Error}");

        // The route never moved: Abort removes the target's copy and resumes the source, links up.
        Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = "m-tcp-abort" })).Phase);

        Assert.Empty(await PodsAsync(b));
        Assert.Equal("still here\n", await EchoAsync(client, "still here\n"));
    }

    /// <summary>A migration to a new address dumps without any network lock (`--network-lock skip`:
    /// its connections are closed on the target): aborted, the source's connection goes on,
    /// also with data the client sent while the pod was frozen and its socket in CRIU's repair mode.</summary>
    [Theory]
    [InlineData("cold")]
    [InlineData("lazy")]
    public async Task AbortOfAMigrationToANewAddress_TheSourcesConnectionGoesOn(string mode)
    {
        using var pipes = mode == "lazy" ? PipeMaxSize.Set(PipeMaxSize.Lazy) : null;
        await using var nodes = await TwoNodes.StartInNamespacesAsync(_registry, Umoci);
        var (a, b, net) = (nodes.Source, nodes.Target, nodes.Network!);
        var (pod, podId, ip, client) = await EchoPodAsync(a, net, $"echo-new-{mode}", loop: true);
        using var _ = client;
        var id = $"m-new-ip-{mode}";
        // The two nodes share the pod subnet: a first pod on B takes the address A's pod has there.
        await b.Node.RunPodAsync("first-pod-on-b");
        var on = On(b, pod);
        var prepared = await PrepareAsync(b, new PrepareTargetRequest
        {
            MigrationId = id,
            Config = Kubelet.Sandbox(on),
            ContainerConfigs = { EchoContainer(on, await ImageIdAsync(b), loop: true) },
        });
        Assert.NotEqual(ip, await PodIpAsync(b, prepared));

        // Sent while the migration runs: it arrives while the pod is frozen or its socket dumped.
        var migrating = MigrateAsync(a, id, podId, b.Address, mode, allowNewIp: true);
        await client.SendAsync(Encoding.ASCII.GetBytes("during\n"), SocketFlags.None);
        var done = (await migrating)[^1];
        Assert.True(done.Phase == "DONE" && !done.KeptIp, $"{done.Phase}: {done.Error}");

        Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = id })).Phase);
        Assert.Equal("first-pod-on-b", Assert.Single(await PodsAsync(b)).Metadata.Name);
        Assert.Equal("during\n", await ReadAsync(client, "during\n".Length, "during"));
        Assert.Equal("still here\n", await EchoAsync(client, "still here\n"));
    }

    [Fact]
    public async Task SourceDaemonKilledAfterTheDumpOfAMigrationThatKeepsTheIp_TheRestartLiftsTheLock_AndTheConnectionGoesOn()
    {
        await using var nodes = await TwoNodes.StartInNamespacesAsync(_registry, Umoci);
        var (a, b, net) = (nodes.Source, nodes.Target, nodes.Network!);
        a.D.Environment["CRIRUNTIME_FAULT"] = "migrate-after-dump";
        await a.D.RestartAsync();
        var (pod, podId, ip, client) = await EchoPodAsync(a, net, "echo-crash");
        using var _ = client;
        await PrepareEchoAsync(b, pod, ip, "m-tcp-crash");

        // Locked, frozen and dumped when the daemon dies.
        await Assert.ThrowsAsync<RpcException>(async () => await MigrateAsync(a, "m-tcp-crash", podId, b.Address, allowNewIp: false));
        await a.D.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal([false], NodeNetwork.BridgePortsUp(net.NodeA, a.Node.Net.Bridge));
        a.D.Environment.Clear();
        await a.D.StartAsync();

        // The restart resumes the source before serving: the links it set down are up again.
        Assert.Equal([true], NodeNetwork.BridgePortsUp(net.NodeA, a.Node.Net.Bridge));
        Assert.Equal("FAILED", (await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-tcp-crash" })).Phase);
        Assert.Equal("still here\n", await EchoAsync(client, "still here\n"));
    }

    [Fact]
    public async Task Migration_WhenTheTargetCannotKeepThePodsIp_FailsBeforeTheFreeze_UnlessANewIpIsAllowed()
    {
        // One network namespace, a pod subnet per node: node B cannot give A's pod its address.
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-ip");
        var ip = await PodIpAsync(a, source.PodId);
        // B's bridge set up by a first pod: the bridge plugin pins the bridge's MAC only after an
        // ADD that succeeded; one whose IPAM failed first leaves a bridge without ports, whose MAC
        // the kernel then zeroes, and every later ADD fails ("could not set bridge's mac").
        await b.Node.RunPodAsync("first-pod-on-b");

        var request = await PrepareRequestAsync(b, source, "m-ip");
        request.PodIps.Add(ip);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await b.Migration.PrepareTargetAsync(request));
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains($"cannot give the pod {ip}", refused.Status.Detail);
        Assert.Equal("first-pod-on-b", Assert.Single(await PodsAsync(b)).Metadata.Name);

        // Prepared with a new address: Migrate without allow_new_ip refuses before any freeze.
        var newIpPod = await PrepareAsync(b, source, "m-ip-new");
        Assert.NotEqual(ip, await PodIpAsync(b, newIpPod));
        var e = await Assert.ThrowsAsync<RpcException>(async () => await MigrateAsync(a, "m-ip-new", source.PodId, b.Address, allowNewIp: false));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("connections cannot be kept", e.Status.Detail);
        Assert.Equal("FAILED", (await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-ip-new" })).Phase);
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 2);
        Assert.Equal(source.ContainerId, Assert.Single(await ContainersAsync(a, source.PodId)).Id);

        // allow_new_ip: the target takes a new address instead.
        request.MigrationId = "m-ip-allowed";
        request.AllowNewIp = true;
        var allowed = await PrepareAsync(b, request);
        Assert.NotEqual(ip, await PodIpAsync(b, allowed));
        Assert.Equal(PodSandboxState.SandboxReady, (await b.C.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = allowed })).Status.State);
    }
}
