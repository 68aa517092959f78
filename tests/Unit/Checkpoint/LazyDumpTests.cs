using System.Net;
using System.Net.Sockets;
using CriRuntime.Checkpoint;
using CriRuntime.Config;

namespace CriRuntime.Tests.Unit.Checkpoint;

public class LazyDumpTests
{
    private static readonly MigrationSection Pki = new() { CertFile = "/pki/node.crt", KeyFile = "/pki/node.key", CaFile = "/pki/ca.crt" };

    [Fact]
    public void TlsArgs_UseTheNodesCertificateAndCa_AndOnlyTheClientChecksTheName()
    {
        var server = LazyDump.TlsArgs(Pki, server: true);
        var client = LazyDump.TlsArgs(Pki, server: false);

        Assert.Equal(["--tls", "--tls-cacert", "/pki/ca.crt", "--tls-cert", "/pki/node.crt", "--tls-key", "/pki/node.key", "--tls-no-cn-verify"], server);
        Assert.Equal(server.Take(7), client);
    }

    [Fact]
    public async Task LocalAddressTowards_IsTheAddressTheTargetIsReachedFrom()
    {
        using var target = new TcpListener(IPAddress.Loopback, 0);
        target.Start();

        var local = await LazyDump.LocalAddressTowardsAsync("127.0.0.1", ((IPEndPoint)target.LocalEndpoint).Port, CancellationToken.None);

        Assert.Equal("127.0.0.1", local);
        Assert.InRange(LazyDump.FreePort(local), 1, 65535);
    }
}
