using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using CriRuntime.Errors;
using CriRuntime.Images.Oci;

namespace CriRuntime.Images.Registry;

/// <summary>Authorisation for registry requests, shared by all pulls: the last challenge each
/// registry host answered with (so later requests authorise up front instead of taking a 401
/// each), and bearer tokens per realm, service, scope and identity, kept until they expire.
/// Follows docker's token auth: GET realm?service=...&amp;scope=... with basic credentials, or
/// POST grant_type=refresh_token for an identity token.</summary>
public sealed class RegistryAuth(HttpClient http, TimeProvider time)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, AuthChallenge> _challenges = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string Token, DateTimeOffset Expires)> _tokens = new(StringComparer.Ordinal);

    /// <summary>Registries answer a token without expires_in with 60 s of validity; renew a little early.</summary>
    private static readonly TimeSpan DefaultLifetime = TimeSpan.FromSeconds(60), Margin = TimeSpan.FromSeconds(10);

    public void Remember(string host, AuthChallenge challenge)
    {
        lock (_lock) _challenges[host] = challenge;
    }

    public void Forget(string host, string scope, RegistryCredentials creds)
    {
        lock (_lock)
        {
            if (_challenges.TryGetValue(host, out var c) && c.IsBearer)
                _tokens.Remove(TokenKey(c, scope, creds));
        }
    }

    /// <summary>The Authorization header for a request to <paramref name="host"/>, from the
    /// challenge it last answered; null when it never asked for one (anonymous registry).</summary>
    public async Task<AuthenticationHeaderValue?> AuthorizationAsync(string host, string scope, RegistryCredentials creds, CancellationToken ct)
    {
        AuthChallenge? challenge;
        lock (_lock) _challenges.TryGetValue(host, out challenge);
        if (challenge is null) return null;
        if (challenge.IsBasic)
            return creds.HasBasic ? new AuthenticationHeaderValue("Basic", creds.BasicHeaderValue)
                : throw Fail.FailedPrecondition($"registry {host} requires credentials (basic auth) and the pull has none");
        if (!challenge.IsBearer)
            throw Fail.FailedPrecondition($"registry {host} asks for unsupported authentication scheme {challenge.Scheme}");
        if (creds.RegistryToken is { } registryToken) return new AuthenticationHeaderValue("Bearer", registryToken);
        return new AuthenticationHeaderValue("Bearer", await TokenAsync(host, challenge, scope, creds, ct).ConfigureAwait(false));
    }

    private static string TokenKey(AuthChallenge c, string scope, RegistryCredentials creds) =>
        $"{c["realm"]}\n{c["service"]}\n{scope}\n{creds.CacheKey}";

    private async Task<string> TokenAsync(string host, AuthChallenge challenge, string scope, RegistryCredentials creds, CancellationToken ct)
    {
        var key = TokenKey(challenge, scope, creds);
        lock (_lock)
            if (_tokens.TryGetValue(key, out var cached) && cached.Expires > time.GetUtcNow()) return cached.Token;

        var realm = challenge["realm"] is { } r && Uri.TryCreate(r, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"
            ? u : throw Fail.Unavailable($"registry {host} sent a bearer challenge without a usable realm");
        var service = challenge["service"];
        HttpRequestMessage request;
        if (creds.IdentityToken is { } refresh)
        {
            var form = new List<KeyValuePair<string, string>>
            {
                new("grant_type", "refresh_token"), new("refresh_token", refresh), new("client_id", "criruntime"), new("scope", scope),
            };
            if (service is not null) form.Add(new("service", service));
            request = new HttpRequestMessage(HttpMethod.Post, realm) { Content = new FormUrlEncodedContent(form) };
        }
        else
        {
            var query = $"scope={Uri.EscapeDataString(scope)}" + (service is null ? "" : $"&service={Uri.EscapeDataString(service)}");
            var builder = new UriBuilder(realm) { Query = string.IsNullOrEmpty(realm.Query) ? query : $"{realm.Query.TrimStart('?')}&{query}" };
            request = new HttpRequestMessage(HttpMethod.Get, builder.Uri);
            if (creds.HasBasic) request.Headers.Authorization = new AuthenticationHeaderValue("Basic", creds.BasicHeaderValue);
        }

        using (request)
        using (var response = await http.SendAsync(request, ct).ConfigureAwait(false))
        {
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                throw Fail.FailedPrecondition($"registry {host}: token service {realm.GetLeftPart(UriPartial.Path)} refused {(creds.IsAnonymous ? "anonymous access" : "the credentials")}: {(int)response.StatusCode} {response.ReasonPhrase}");
            if (!response.IsSuccessStatusCode)
                throw Fail.Unavailable($"registry {host}: token service {realm.GetLeftPart(UriPartial.Path)} answered {(int)response.StatusCode} {response.ReasonPhrase}");
            var body = await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
            TokenResponse? token;
            try { token = JsonSerializer.Deserialize(body, OciJson.Default.TokenResponse); }
            catch (JsonException e) { throw Fail.Unavailable($"registry {host}: token service sent invalid JSON: {e.Message}"); }
            var value = token?.Token ?? token?.AccessToken;
            if (string.IsNullOrEmpty(value)) throw Fail.Unavailable($"registry {host}: token service sent no token");
            var lifetime = token!.ExpiresIn is int s and > 0 ? TimeSpan.FromSeconds(s) : DefaultLifetime;
            var issued = token.IssuedAt ?? time.GetUtcNow();
            lock (_lock) _tokens[key] = (value, issued + lifetime - Margin);
            return value;
        }
    }
}
