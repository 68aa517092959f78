using System.Text;

namespace CriRuntime.Streaming.Http;

/// <summary>The head of one HTTP/1.1 request (RFC 9112): request line and header fields, as the
/// stream server needs them. Every streaming request is an upgrade (SPDY/3.1 or WebSocket) without
/// a body, so this is all the HTTP the stream server reads; what follows the head is the upgraded
/// protocol's.</summary>
public sealed class HttpRequestHead
{
    /// <summary>The largest head accepted; kubectl's and the apiserver's are well under 4 KiB.</summary>
    public const int MaxSize = 16 * 1024;

    public required string Method { get; init; }
    /// <summary>The request target's path, percent-decoding not applied (tokens are URL-safe).</summary>
    public required string Path { get; init; }
    /// <summary>The query without its '?', empty when there is none.</summary>
    public required string Query { get; init; }
    public required string Version { get; init; }
    public required IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; }

    /// <summary>Every value of the header <paramref name="name"/>, split at commas (a list-valued
    /// field may be sent as one line or several: RFC 9110 5.3), trimmed, empty ones dropped.</summary>
    public IReadOnlyList<string> Values(string name)
    {
        var values = new List<string>();
        foreach (var (key, value) in Headers)
            if (string.Equals(key, name, StringComparison.OrdinalIgnoreCase))
                values.AddRange(value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
        return values;
    }

    /// <summary>The header's first line's value, untouched; null when absent.</summary>
    public string? Get(string name)
    {
        foreach (var (key, value) in Headers)
            if (string.Equals(key, name, StringComparison.OrdinalIgnoreCase)) return value;
        return null;
    }

    /// <summary>Whether the comma-separated header <paramref name="name"/> holds <paramref name="token"/>
    /// (case-insensitive, as Connection and Upgrade tokens are).</summary>
    public bool HasToken(string name, string token) =>
        Values(name).Any(v => string.Equals(v, token, StringComparison.OrdinalIgnoreCase));

    /// <summary>Every value of the query parameter <paramref name="name"/>, percent-decoded.</summary>
    public IReadOnlyList<string> QueryValues(string name)
    {
        var values = new List<string>();
        foreach (var pair in Query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            var key = Uri.UnescapeDataString((eq < 0 ? pair : pair[..eq]).Replace('+', ' '));
            if (key == name) values.Add(eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..].Replace('+', ' ')));
        }
        return values;
    }

    /// <summary>The length of the head in <paramref name="buffer"/> (through the empty line that ends
    /// it), or -1 when it has not all arrived yet.</summary>
    public static int EndOfHead(ReadOnlySpan<byte> buffer)
    {
        var end = buffer.IndexOf("\r\n\r\n"u8);
        return end < 0 ? -1 : end + 4;
    }

    /// <summary>Parses a complete head (<see cref="EndOfHead"/> bytes). Throws
    /// <see cref="FormatException"/> saying what is wrong: the server answers 400 with it.</summary>
    public static HttpRequestHead Parse(ReadOnlySpan<byte> head)
    {
        // Field values are octets; Latin-1 keeps every byte (RFC 9110 5.5), and nothing here needs more.
        var text = Encoding.Latin1.GetString(head);
        var lines = text.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || requestLine[0].Length == 0 || requestLine[1].Length == 0)
            throw new FormatException($"malformed request line \"{lines[0]}\"");
        var (method, target, version) = (requestLine[0], requestLine[1], requestLine[2]);
        if (version is not ("HTTP/1.1" or "HTTP/1.0")) throw new FormatException($"unsupported HTTP version \"{version}\"");
        if (!target.StartsWith('/')) throw new FormatException($"request target \"{target}\" is not an absolute path");
        var q = target.IndexOf('?');
        var headers = new List<KeyValuePair<string, string>>();
        foreach (var line in lines.Skip(1))
        {
            if (line.Length == 0) continue; // the empty lines that end the head
            if (line[0] is ' ' or '\t') throw new FormatException("obsolete line folding in a header field");
            var colon = line.IndexOf(':');
            if (colon <= 0 || line.AsSpan(0, colon).ContainsAny(" \t")) throw new FormatException($"malformed header field \"{line}\"");
            headers.Add(new(line[..colon], line[(colon + 1)..].Trim(' ', '\t')));
        }
        return new HttpRequestHead
        {
            Method = method,
            Path = q < 0 ? target : target[..q],
            Query = q < 0 ? "" : target[(q + 1)..],
            Version = version,
            Headers = headers,
        };
    }
}
