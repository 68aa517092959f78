using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Net.Client;
using MigrationApi = CriRuntime.Migration.V1.Migration;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>One node of <see cref="TwoNodes"/>: a daemon of its own (root, state, socket, cgroup
/// root, CNI bridge and subnet) that restores checkpoints and listens for migrations on
/// 127.0.0.1 with a certificate of the test's CA.</summary>
public sealed class MigrationNode
{
    public required TestNode Node { get; init; }
    public required string Address { get; init; }
    public required MigrationApi.MigrationClient Migration { get; init; }
    public DaemonProcess D => Node.D;
    public CriClient C => Node.C;
}

/// <summary>Two nodes on this machine for migration tests (docs/migration.md, "Two nodes on one
/// machine"): two real daemons, each with its own root, state, socket, cgroup root, CNI network
/// (bridge and subnet: TestNetwork) and migration listener on 127.0.0.1 with certificates of one
/// test CA. Both share the host's network namespace for now; the next slice (the pod keeping its
/// IP) puts each node in a network namespace of its own joined by a veth pair, which is why a
/// node is built in one place (<see cref="StartNodeAsync"/>) with its listener address, network
/// and configuration as separate steps.</summary>
public sealed class TwoNodes : IAsyncDisposable
{
    public required TestCertificates Certificates { get; init; }
    public required MigrationNode Source { get; init; }
    public required MigrationNode Target { get; init; }
    /// <summary>The nodes' own network namespaces and the outside one (<see cref="StartInNamespacesAsync"/>); null: both in the test's.</summary>
    public NodeNetwork? Network { get; init; }

    /// <summary>Both daemons in the test's network namespace, a pod subnet each: a migrated pod gets a new address.</summary>
    public static Task<TwoNodes> StartAsync(RegistryFixture registry, params string[] images) => StartAsync(registry, null, images);

    /// <summary>Each daemon in a network namespace of its own, joined through an outside one, one
    /// pod subnet on both (<see cref="NodeNetwork"/>): a migrated pod can keep its address.</summary>
    public static async Task<TwoNodes> StartInNamespacesAsync(RegistryFixture registry, params string[] images)
    {
        var network = new NodeNetwork(int.Parse(registry.Host.Split(':')[1]));
        try { return await StartAsync(registry, network, images); }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private static async Task<TwoNodes> StartAsync(RegistryFixture registry, NodeNetwork? network, string[] images)
    {
        var certs = new TestCertificates("criruntime-test-ca");
        MigrationNode? source = null;
        try
        {
            source = await StartNodeAsync(registry, certs, "node-a", images, network, network?.NodeA, network?.AddressA);
            var target = await StartNodeAsync(registry, certs, "node-b", images, network, network?.NodeB, network?.AddressB);
            return new TwoNodes { Source = source, Target = target, Certificates = certs, Network = network };
        }
        catch
        {
            if (source is not null) await source.Node.DisposeAsync();
            certs.Dispose();
            throw;
        }
    }

    private static async Task<MigrationNode> StartNodeAsync(RegistryFixture registry, TestCertificates certs, string name, string[] images,
        NodeNetwork? network, string? netns, IPAddress? uplink)
    {
        // In a namespace of its own the node listens on its uplink address (any port is free there).
        var address = uplink is null ? $"127.0.0.1:{FreePort()}" : $"{uplink}:7443";
        var node = await TestNode.StartAsync(registry, d =>
        {
            d.NetNs = netns;
            using var cert = uplink is null ? certs.Issue(name) : certs.Issue(name, uplink);
            var (certFile, keyFile, caFile) = certs.WritePem(cert, Path.Combine(d.Dir, "etc", "pki"), name);
            File.WriteAllText(Path.Combine(d.DropInDir, "migration.toml"), $"""
                [checkpoint]
                restore = true
                [migration]
                listen = "{address}"
                cert_file = "{certFile}"
                key_file = "{keyFile}"
                ca_file = "{caFile}"
                """);
        }, network is null ? null : d => new TestNetwork(d, portMap: false, subnet: network.PodSubnet));
        foreach (var image in images) await node.C.PullAsync(image);
        return new MigrationNode { Node = node, Address = address, Migration = new MigrationApi.MigrationClient(node.C.Invoker) };
    }

    /// <summary>A port nobody listens on now (the kernel's pick for port 0).</summary>
    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>A peer client of <paramref name="node"/>'s migration listener presenting
    /// <paramref name="clientCert"/>, trusting the node's certificate when <paramref name="ca"/> signed it.</summary>
    public static (GrpcChannel Channel, MigrationPeer.MigrationPeerClient Client) Peer(MigrationNode node, X509Certificate2 clientCert, X509Certificate2 ca)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = [clientCert],
                LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCert,
                RemoteCertificateValidationCallback = (_, cert, _, _) =>
                {
                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.Add(ca);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return cert is X509Certificate2 c && chain.Build(c);
                },
            },
        };
        var channel = GrpcChannel.ForAddress($"https://{node.Address}", new GrpcChannelOptions { HttpHandler = handler });
        return (channel, new MigrationPeer.MigrationPeerClient(channel));
    }

    public async ValueTask DisposeAsync()
    {
        try { await Source.Node.DisposeAsync(); }
        finally
        {
            try { await Target.Node.DisposeAsync(); }
            finally
            {
                Certificates.Dispose();
                Network?.Dispose();
            }
        }
    }
}
