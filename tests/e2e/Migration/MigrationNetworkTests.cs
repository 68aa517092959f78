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
    /// an established TCP connection, echoing what it reads.</summary>
    private ContainerConfig EchoContainer(KubePod pod, string imageId)
    {
        var c = Kubelet.Container(pod, "echo", imageId, Umoci, ["nc", "-l", "-p", EchoPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "-e", "cat"]);
        c.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 0 };
        return c;
    }

    /// <summary>Sends <paramref name="line"/> and reads its echo: a reset or an end of stream fails.</summary>
    private static async Task<string> EchoAsync(Socket client, string line)
    {
        var bytes = Encoding.ASCII.GetBytes(line);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await client.SendAsync(bytes, SocketFlags.None, timeout.Token);
        var buffer = new byte[bytes.Length];
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await client.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
            if (n == 0) throw new IOException($"the connection was closed after {read} bytes of the echo of '{line.Trim()}'");
            read += n;
        }
        return Encoding.ASCII.GetString(buffer);
    }

    private static async Task<string> PodIpAsync(MigrationNode n, string podId) =>
        (await n.C.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId })).Status.Network.Ip;

    [Fact]
    public async Task ColdMigration_KeepsThePodsIp_AndAClientOutsideBothNodesKeepsItsTcpConnection()
    {
        await using var nodes = await TwoNodes.StartInNamespacesAsync(_registry, Umoci);
        var (a, b, net) = (nodes.Source, nodes.Target, nodes.Network!);
        var pod = new KubePod { Name = "echo-cold", LogRoot = Path.Combine(a.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await a.C.RunPodAsync(sandbox);
        a.Node.Track(podId);
        var id = await a.C.StartNewAsync(podId, sandbox, EchoContainer(pod, await ImageIdAsync(a)));
        var ip = await PodIpAsync(a, podId);
        net.RoutePod(ip, net.AddressA);
        // Listening (port 7000 = 0x1B58, state 0A), seen from inside: then the client connects.
        await a.C.ExecOkAsync(id, "sh", "-c", "until grep -q ':1B58 00000000:0000 0A' /proc/net/tcp; do sleep 0.05; done");
        using var client = net.OutsideSocket();
        await client.ConnectAsync(IPAddress.Parse(ip), EchoPort);
        Assert.Equal("before\n", await EchoAsync(client, "before\n"));

        var target = On(b, pod);
        var prepared = await PrepareAsync(b, new PrepareTargetRequest
        {
            MigrationId = "m-tcp",
            Config = Kubelet.Sandbox(target),
            ContainerConfigs = { EchoContainer(target, await ImageIdAsync(b)) },
            PodIps = { ip },
        });
        Assert.Equal(ip, await PodIpAsync(b, prepared));

        var seen = await MigrateAsync(a, "m-tcp", podId, b.Address, allowNewIp: false);

        var done = seen[^1];
        Assert.True(done.Phase == "DONE", $"{done.Phase}: {done.Error}");
        Assert.True(done.KeptIp);
        Assert.Equal(ContainerState.ContainerRunning, Assert.Single(await ContainersAsync(b, prepared)).State);
        // The switch-over a CNI plugin or BGP would make: outside now routes the pod's IP to B.
        net.RoutePod(ip, net.AddressB);
        Assert.Equal("moved\n", await EchoAsync(client, "moved\n"));
        // Commit kills the frozen source and removes its pod: its sockets say nothing to the client.
        Assert.Equal("COMMITTED", (await a.Migration.CommitAsync(new CommitRequest { MigrationId = "m-tcp" })).Phase);
        Assert.Empty(await PodsAsync(a));
        Assert.Equal("after commit\n", await EchoAsync(client, "after commit\n"));
    }

    [Fact]
    public async Task Migration_WhenTheTargetCannotKeepThePodsIp_FailsBeforeTheFreeze_UnlessANewIpIsAllowed()
    {
        // One network namespace, a pod subnet per node: node B cannot give A's pod its address.
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-ip");
        var ip = await PodIpAsync(a, source.PodId);

        var request = await PrepareRequestAsync(b, source, "m-ip");
        request.PodIps.Add(ip);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await b.Migration.PrepareTargetAsync(request));
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains($"cannot give the pod {ip}", refused.Status.Detail);
        Assert.Empty(await PodsAsync(b));

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
