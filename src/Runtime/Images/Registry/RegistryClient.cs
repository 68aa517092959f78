using System.Net;
using System.Net.Http.Headers;
using CriRuntime.Errors;
using CriRuntime.Images.Oci;
using CriRuntime.Images.Reference;

namespace CriRuntime.Images.Registry;

/// <summary>A manifest as served: its digest (verified), media type and bytes.</summary>
public sealed record FetchedManifest(Digest Digest, string? MediaType, byte[] Body);

/// <summary>Talks the OCI distribution API (GET /v2/&lt;name&gt;/manifests|blobs/&lt;ref&gt;) to the
/// endpoints of a registry, with the shared <see cref="RegistryAuth"/>.</summary>
public sealed partial class RegistryClient(HttpClient http, RegistryAuth auth, RegistryEndpoints endpoints, ILogger<RegistryClient> log)
{
    /// <summary>Opens a repository for one pull with that pull's credentials.</summary>
    public RegistryRepository Open(ImageReference reference, RegistryCredentials creds, TimeSpan progressTimeout) =>
        new(this, reference, creds, endpoints.For(reference.Domain), progressTimeout);

    internal HttpClient Http => http;
    internal RegistryAuth Auth => auth;
    internal ILogger Log => log;

    [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "{Reference}: endpoint {Endpoint} failed, trying the next: {Error}")]
    internal static partial void LogEndpointFailed(ILogger log, string reference, string endpoint, string error);

    [LoggerMessage(EventId = 301, Level = LogLevel.Debug, Message = "{Reference}: resolved to {Digest} ({MediaType}) at {Endpoint}")]
    internal static partial void LogResolved(ILogger log, string reference, string digest, string? mediaType, string endpoint);
}

/// <summary>One repository at one registry, for one pull: resolves the reference by trying the
/// mirrors in order then the registry, and fetches everything else from the endpoint that
/// answered.</summary>
public sealed class RegistryRepository
{
    /// <summary>Manifests are small; a larger body is refused rather than buffered.</summary>
    private const int MaxManifestBytes = 4 << 20;

    private readonly RegistryClient _client;
    private readonly ImageReference _reference;
    private readonly RegistryCredentials _creds;
    private readonly IReadOnlyList<RegistryEndpoint> _endpoints;
    private readonly TimeSpan _timeout;
    private readonly string _scope;

    internal RegistryRepository(RegistryClient client, ImageReference reference, RegistryCredentials creds,
        IReadOnlyList<RegistryEndpoint> endpoints, TimeSpan progressTimeout)
    {
        _client = client;
        _reference = reference;
        _creds = creds;
        _endpoints = endpoints;
        _timeout = progressTimeout;
        _scope = $"repository:{reference.Path}:pull";
    }

    /// <summary>The endpoint that resolved the reference; blobs come from it.</summary>
    public RegistryEndpoint Endpoint { get; private set; } = null!;

    public IReadOnlyList<RegistryEndpoint> Endpoints => _endpoints;

    /// <summary>Fetches the manifest the reference names (by digest when it has one, else by tag),
    /// from the first endpoint that has it. Mirror failures of any kind fall through to the next
    /// endpoint; the registry's own failure is the pull's.</summary>
    public async Task<FetchedManifest> ResolveAsync(CancellationToken ct)
    {
        var reference = _reference.Digest?.ToString() ?? _reference.Tag!;
        for (var i = 0; i < _endpoints.Count; i++)
        {
            var endpoint = _endpoints[i];
            try
            {
                var manifest = await FetchManifestAsync(endpoint, reference, _reference.Digest, ct).ConfigureAwait(false);
                Endpoint = endpoint;
                RegistryClient.LogResolved(_client.Log, _reference.ToString(), manifest.Digest.ToString(), manifest.MediaType, endpoint.ToString());
                return manifest;
            }
            catch (Exception e) when (endpoint.IsMirror && i < _endpoints.Count - 1 && !ct.IsCancellationRequested
                                      && e is CriException or HttpRequestException or IOException or OperationCanceledException)
            {
                RegistryClient.LogEndpointFailed(_client.Log, _reference.ToString(), endpoint.ToString(), e.Message);
            }
        }
        throw new InvalidOperationException("no registry endpoints"); // the registry itself is always last
    }

    /// <summary>A manifest by digest from the resolving endpoint (the platform manifest of an index).</summary>
    public Task<FetchedManifest> FetchManifestAsync(Digest digest, CancellationToken ct) =>
        FetchManifestAsync(Endpoint, digest.ToString(), digest, ct);

    private async Task<FetchedManifest> FetchManifestAsync(RegistryEndpoint endpoint, string reference, Digest? expected, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_timeout);
        try
        {
            using var response = await SendAsync(endpoint, $"manifests/{reference}", MediaTypes.Manifests, timeout.Token).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.NotFound)
                throw Fail.NotFound($"{_reference}: manifest {reference} not found at {endpoint}");
            if (!response.IsSuccessStatusCode)
                throw Fail.Unavailable($"{_reference}: {endpoint} answered {(int)response.StatusCode} {response.ReasonPhrase} for manifest {reference}");
            if (response.Content.Headers.ContentLength > MaxManifestBytes)
                throw Fail.FailedPrecondition($"{_reference}: manifest {reference} is larger than {MaxManifestBytes} bytes");
            var body = await ReadLimitedAsync(response.Content, timeout.Token).ConfigureAwait(false);
            var digest = Digest.Of(body);
            if (expected is { } want && want != digest)
                throw Fail.FailedPrecondition($"{_reference}: manifest from {endpoint} hashes to {digest}, not the requested {want}");
            return new FetchedManifest(digest, response.Content.Headers.ContentType?.MediaType, body);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw Fail.DeadlineExceeded($"{_reference}: no answer from {endpoint} for manifest {reference} within {_timeout}");
        }
        catch (HttpRequestException e)
        {
            throw Fail.Unavailable($"{_reference}: cannot reach {endpoint}: {e.Message}", e);
        }
    }

    /// <summary>Starts a blob download; the caller reads the body (and owns the response).</summary>
    public async Task<HttpResponseMessage> OpenBlobAsync(Digest digest, CancellationToken ct)
    {
        HttpResponseMessage response;
        try { response = await SendAsync(Endpoint, $"blobs/{digest}", null, ct).ConfigureAwait(false); }
        catch (HttpRequestException e) { throw Fail.Unavailable($"{_reference}: cannot reach {Endpoint} for blob {digest}: {e.Message}", e); }
        if (response.IsSuccessStatusCode) return response;
        using (response)
        {
            if (response.StatusCode == HttpStatusCode.NotFound) throw Fail.NotFound($"{_reference}: blob {digest} not found at {Endpoint}");
            throw Fail.Unavailable($"{_reference}: {Endpoint} answered {(int)response.StatusCode} {response.ReasonPhrase} for blob {digest}");
        }
    }

    /// <summary>Sends a GET with the cached authorisation; on 401 learns the challenge and retries
    /// once. A second 401, or a 403, is the registry refusing this identity.</summary>
    private async Task<HttpResponseMessage> SendAsync(RegistryEndpoint endpoint, string path, string[]? accept, CancellationToken ct)
    {
        var uri = new Uri(endpoint.BaseUri, $"v2/{_reference.Path}/{path}");
        for (var attempt = 0; ; attempt++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            if (accept is not null)
                foreach (var a in accept) request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(a));
            request.Headers.Authorization = await _client.Auth.AuthorizationAsync(endpoint.Host, _scope, _creds, ct).ConfigureAwait(false);
            var response = await _client.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.Unauthorized && attempt == 0
                && response.Headers.TryGetValues("WWW-Authenticate", out var values))
            {
                var challenges = values.SelectMany(WwwAuthenticate.Parse).ToList();
                var challenge = challenges.FirstOrDefault(c => c.IsBearer) ?? challenges.FirstOrDefault(c => c.IsBasic);
                if (challenge is not null)
                {
                    response.Dispose();
                    _client.Auth.Forget(endpoint.Host, _scope, _creds);
                    _client.Auth.Remember(endpoint.Host, challenge);
                    continue;
                }
            }
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                var status = $"{(int)response.StatusCode} {response.ReasonPhrase}";
                response.Dispose();
                _client.Auth.Forget(endpoint.Host, _scope, _creds);
                throw Fail.FailedPrecondition(
                    $"{_reference}: registry {endpoint} refused {(_creds.IsAnonymous ? "anonymous access" : "the credentials")}: {status}");
            }
            return response;
        }
    }

    private static async Task<byte[]> ReadLimitedAsync(HttpContent content, CancellationToken ct)
    {
        await using var stream = await content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        var ms = new MemoryStream();
        var buffer = new byte[16384];
        int n;
        while ((n = await stream.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            ms.Write(buffer, 0, n);
            if (ms.Length > MaxManifestBytes) throw Fail.FailedPrecondition($"manifest is larger than {MaxManifestBytes} bytes");
        }
        return ms.ToArray();
    }
}
