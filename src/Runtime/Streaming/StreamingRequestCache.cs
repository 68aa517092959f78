using System.Collections.Concurrent;
using System.Security.Cryptography;
using CriRuntime.Errors;

namespace CriRuntime.Streaming;

/// <summary>Pending exec/attach/port-forward requests by token. A token is 128 random bits
/// (base64url), valid once, until its TTL passes (the cache's, or the one given at insertion);
/// what is taken, or expired, is gone.</summary>
public sealed class StreamingRequestCache(TimeProvider clock, TimeSpan ttl, int capacity = 1000)
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    private sealed record Entry(object Request, DateTimeOffset Expires);

    public TimeSpan Ttl => ttl;

    public string Insert(object request, TimeSpan? entryTtl = null)
    {
        var now = clock.GetUtcNow();
        if (_entries.Count >= capacity)
        {
            foreach (var (token, entry) in _entries)
                if (entry.Expires <= now) _entries.TryRemove(token, out _);
            if (_entries.Count >= capacity)
                throw Fail.ResourceExhausted($"{capacity} streaming requests are already pending; retry after {ttl.TotalSeconds:0}s");
        }
        var newToken = Base64Url(RandomNumberGenerator.GetBytes(16));
        _entries[newToken] = new Entry(request, now + (entryTtl ?? ttl));
        return newToken;
    }

    /// <summary>The request for <paramref name="token"/>, removed: a second call gets null, as does
    /// an expired or unknown token.</summary>
    public T? Consume<T>(string token) where T : class
    {
        if (!_entries.TryRemove(token, out var entry)) return null;
        if (entry.Expires <= clock.GetUtcNow()) return null;
        return entry.Request as T;
    }

    public int Count => _entries.Count;

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
