using CriRuntime.Config;

namespace CriRuntime.Images.Registry;

/// <summary>One place to fetch a repository from: a base URI (scheme://host[:port]) and whether it
/// is a mirror (whose failures fall through to the next endpoint) or the registry itself.</summary>
public sealed record RegistryEndpoint(Uri BaseUri, bool IsMirror)
{
    /// <summary>host[:port], for messages and the auth cache.</summary>
    public string Host => BaseUri.IsDefaultPort ? BaseUri.Host : $"{BaseUri.Host}:{BaseUri.Port}";
    public override string ToString() => BaseUri.GetLeftPart(UriPartial.Authority);
}

/// <summary>Which endpoints serve a registry domain, from the [registry] config: the mirrors of
/// [registry.mirrors."domain"] in order, then the registry itself (docker.io is served by
/// registry-1.docker.io). https unless the host is listed in [registry] insecure or is loopback.</summary>
public sealed class RegistryEndpoints(Func<RegistrySection> current)
{
    public RegistryEndpoints(RegistrySection config) : this(() => config) { }

    public const string DockerHubEndpoint = "registry-1.docker.io";

    public IReadOnlyList<RegistryEndpoint> For(string domain)
    {
        // Read per pull: a reload (SIGHUP) changes mirrors and insecure hosts for the next one.
        var config = current();
        var result = new List<RegistryEndpoint>();
        if (config.Mirrors.TryGetValue(domain, out var mirror))
            foreach (var e in mirror.Endpoints)
                result.Add(new RegistryEndpoint(ToUri(e), IsMirror: true));
        var host = domain == Reference.ImageReference.DockerHub ? DockerHubEndpoint : domain;
        result.Add(new RegistryEndpoint(ToUri(host), IsMirror: false));
        return result;
    }

    /// <summary>"host[:port]" or a URL with a scheme; a path on a mirror URL is kept as a prefix.</summary>
    private Uri ToUri(string endpoint)
    {
        if (endpoint.Contains("://", StringComparison.Ordinal))
            return new Uri(endpoint.TrimEnd('/') + "/", UriKind.Absolute);
        var scheme = IsPlainHttp(endpoint) ? "http" : "https";
        return new Uri($"{scheme}://{endpoint}/", UriKind.Absolute);
    }

    public bool IsPlainHttp(string hostPort)
    {
        var config = current();
        if (config.Insecure.Contains(hostPort)) return true;
        var host = hostPort;
        if (host.StartsWith('[')) host = host[1..host.IndexOf(']')];
        else if (host.LastIndexOf(':') is var c and > 0) host = host[..c];
        return host is "localhost" or "127.0.0.1" or "::1" || config.Insecure.Contains(host);
    }
}
