using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CriRuntime.Config;
using CriRuntime.Migration;

namespace CriRuntime.Tests.Unit.Migration;

public sealed class PeerTlsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("peertls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (X509Certificate2 Ca, ECDsa Key) Ca(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        return (request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(2)), key);
    }

    private static X509Certificate2 Issue((X509Certificate2 Ca, ECDsa Key) ca, string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        using var issued = request.Create(ca.Ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3, 4]);
        return issued.CopyWithPrivateKey(key);
    }

    private MigrationSection Write((X509Certificate2 Ca, ECDsa Key) ca, X509Certificate2 node)
    {
        File.WriteAllText(Path.Combine(_dir, "node.crt"), node.ExportCertificatePem());
        File.WriteAllText(Path.Combine(_dir, "node.key"), node.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(_dir, "ca.crt"), ca.Ca.ExportCertificatePem());
        return new MigrationSection
        {
            CertFile = Path.Combine(_dir, "node.crt"), KeyFile = Path.Combine(_dir, "node.key"), CaFile = Path.Combine(_dir, "ca.crt"),
        };
    }

    [Fact]
    public void APeerSignedByTheConfiguredCa_IsAccepted_AndOneSignedByAnotherCa_IsRefused()
    {
        var ca = Ca("ours");
        var other = Ca("theirs");
        using var node = Issue(ca, "node-a");
        var tls = PeerTls.Load(Write(ca, node))!;

        using var peer = Issue(ca, "node-b");
        using var intruder = Issue(other, "node-b");
        Assert.True(tls.IsSignedByCa(peer));
        Assert.False(tls.IsSignedByCa(intruder));
        // Not the host's trust store either: the other CA's own certificate is no peer.
        Assert.False(tls.IsSignedByCa(other.Ca));
        Assert.True(tls.Certificate.HasPrivateKey);
    }

    [Fact]
    public void Credentials_AreOffWithoutTheFiles_AndAnUnreadableKeyIsAConfigErrorNamingTheKeys()
    {
        Assert.Null(PeerTls.Load(new MigrationSection()));
        var ca = Ca("ours");
        using var node = Issue(ca, "node-a");
        var section = Write(ca, node) with { KeyFile = Path.Combine(_dir, "missing.key") };

        var e = Assert.Throws<ConfigException>(() => PeerTls.Load(section));

        Assert.Contains("migration.cert_file/key_file", e.Message);
        Assert.Contains("missing.key", e.Message);
    }

    [Theory]
    [InlineData("10.0.0.5:7443", true)]
    [InlineData("node-b.example:7443", true)]
    [InlineData("[::1]:7443", true)]
    [InlineData("10.0.0.5", false)]
    [InlineData("10.0.0.5:0", false)]
    [InlineData(":7443", false)]
    public void TargetAddress_IsHostColonPort(string address, bool valid) => Assert.Equal(valid, PeerClient.IsAddress(address));

    [Theory]
    [InlineData("m-1", true)]
    [InlineData("3f2a.migration_2", true)]
    [InlineData("", false)]
    [InlineData("..", false)]
    [InlineData("a/b", false)]
    public void MigrationId_IsOneSafePathComponent(string id, bool valid) => Assert.Equal(valid, MigrationStore.IsValidId(id));
}
