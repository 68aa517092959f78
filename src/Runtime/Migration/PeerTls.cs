using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CriRuntime.Config;
using CriRuntime.Errors;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace CriRuntime.Migration;

/// <summary>The node's identity on the migration transport ([migration] cert_file, key_file) and
/// the CA a peer must be signed by (ca_file), used both ways: the listener requires a client
/// certificate and refuses one the CA did not sign; the source refuses a target whose certificate
/// the CA did not sign or that does not name the address dialed. Only the CA of ca_file is
/// trusted (never the host's store).</summary>
public sealed class PeerTls
{
    public X509Certificate2 Certificate { get; }
    private readonly X509Certificate2 _ca;

    private PeerTls(X509Certificate2 certificate, X509Certificate2 ca)
    {
        Certificate = certificate;
        _ca = ca;
    }

    /// <summary>The credentials of <paramref name="m"/>, or null when its files are not all set.
    /// Unreadable files are a <see cref="ConfigException"/> naming the key.</summary>
    public static PeerTls? Load(MigrationSection m)
    {
        if (m.CertFile.Length == 0 || m.KeyFile.Length == 0 || m.CaFile.Length == 0) return null;
        X509Certificate2 cert, ca;
        try { cert = X509Certificate2.CreateFromPemFile(m.CertFile, m.KeyFile); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        { throw new ConfigException($"migration.cert_file/key_file: cannot load {m.CertFile} with {m.KeyFile}: {e.Message}", e); }
        try { ca = X509Certificate2.CreateFromPem(File.ReadAllText(m.CaFile)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        { throw new ConfigException($"migration.ca_file: cannot load {m.CaFile}: {e.Message}", e); }
        return new PeerTls(cert, ca);
    }

    /// <summary>True when <paramref name="peer"/> chains to the configured CA (and only it).</summary>
    public bool IsSignedByCa(X509Certificate2 peer)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(peer);
    }

    /// <summary>The listener's TLS: this node's certificate, a client certificate required and
    /// checked against the CA.</summary>
    public HttpsConnectionAdapterOptions ServerOptions() => new()
    {
        ServerCertificate = Certificate,
        ClientCertificateMode = ClientCertificateMode.RequireCertificate,
        ClientCertificateValidation = (cert, _, _) => IsSignedByCa(cert),
        SslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13,
    };

    /// <summary>The source's TLS toward a target: this node's certificate as client certificate;
    /// the target's must chain to the CA and name the address dialed.</summary>
    public SslClientAuthenticationOptions ClientOptions() => new()
    {
        ClientCertificates = [Certificate],
        LocalCertificateSelectionCallback = (_, _, _, _, _) => Certificate,
        RemoteCertificateValidationCallback = (_, cert, _, errors) =>
            cert is X509Certificate2 c && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None && IsSignedByCa(c),
    };

    /// <summary>Credentials required: FailedPrecondition naming the keys when they are not set.</summary>
    public static PeerTls Required(PeerTls? tls) =>
        tls ?? throw Fail.FailedPrecondition("migration needs [migration] cert_file, key_file and ca_file (mutual TLS between the nodes)");
}
