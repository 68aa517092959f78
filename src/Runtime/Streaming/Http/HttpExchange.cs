using System.Globalization;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;

namespace CriRuntime.Streaming.Http;

/// <summary>One request on the streaming listener and its answer: a plain response (then the
/// connection closes), or a 101 that hands the connection to SPDY or WebSocket. The stream server's
/// replacement for ASP.NET Core's HttpContext, with only what the streaming endpoints use, so that
/// process carries no web framework (docs/streaming.md).</summary>
public sealed class HttpExchange(HttpRequestHead request, Stream connection)
{
    /// <summary>RFC 6455 4.2.2: the key's accept value is SHA-1 of the key and this GUID.</summary>
    private const string WebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    /// <summary>As ASP.NET Core's default: a ping when the connection has been quiet this long.</summary>
    public static readonly TimeSpan WebSocketKeepAlive = TimeSpan.FromMinutes(2);

    private bool _responded;

    public HttpRequestHead Request => request;

    /// <summary>Whether a response (plain or 101) has been written.</summary>
    public bool Responded => _responded;

    /// <summary>A WebSocket opening handshake (RFC 6455 4.2.1) as ASP.NET Core's
    /// IsWebSocketRequest tells it: GET, Connection: Upgrade, Upgrade: websocket, version 13 and a
    /// 16-byte base64 key.</summary>
    public bool IsWebSocketRequest =>
        request.Method == "GET" && request.Version == "HTTP/1.1"
        && request.HasToken("Connection", "Upgrade") && request.HasToken("Upgrade", "websocket")
        && request.Get("Sec-WebSocket-Version") == "13" && IsWebSocketKey(request.Get("Sec-WebSocket-Key"));

    /// <summary>Connection: Upgrade with an Upgrade header (Kestrel's IsUpgradableRequest).</summary>
    public bool IsUpgradeRequest => request.HasToken("Connection", "Upgrade") && request.Values("Upgrade").Count > 0;

    public IReadOnlyList<string> WebSocketRequestedProtocols => request.Values("Sec-WebSocket-Protocol");

    private static bool IsWebSocketKey(string? key)
    {
        if (key is null) return false;
        Span<byte> decoded = stackalloc byte[24];
        return Convert.TryFromBase64String(key.Trim(), decoded, out var n) && n == 16;
    }

    /// <summary>A complete response with a text body; the connection closes after it.</summary>
    public Task RespondAsync(int status, string body, IEnumerable<KeyValuePair<string, string>>? headers = null)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        return WriteHeadAsync(status,
        [
            new("Content-Type", "text/plain; charset=utf-8"),
            new("Content-Length", bytes.Length.ToString(CultureInfo.InvariantCulture)),
            new("Connection", "close"),
            .. headers ?? [],
        ], bytes);
    }

    /// <summary>101 Switching Protocols to <paramref name="protocol"/> with <paramref name="headers"/>;
    /// the connection is then the upgraded protocol's.</summary>
    public async Task<Stream> UpgradeAsync(string protocol, IEnumerable<KeyValuePair<string, string>> headers)
    {
        await WriteHeadAsync(101, [new("Connection", "Upgrade"), new("Upgrade", protocol), .. headers], default).ConfigureAwait(false);
        return connection;
    }

    /// <summary>The status line, the header fields, the empty line, then <paramref name="body"/>.</summary>
    private async Task WriteHeadAsync(int status, IEnumerable<KeyValuePair<string, string>> headers, ReadOnlyMemory<byte> body)
    {
        var head = new StringBuilder();
        head.Append(CultureInfo.InvariantCulture, $"HTTP/1.1 {status} {Reason(status)}\r\n");
        foreach (var (name, value) in headers) head.Append(CultureInfo.InvariantCulture, $"{name}: {value}\r\n");
        head.Append("\r\n");
        _responded = true;
        await connection.WriteAsync(Encoding.Latin1.GetBytes(head.ToString())).ConfigureAwait(false);
        if (!body.IsEmpty) await connection.WriteAsync(body).ConfigureAwait(false);
        await connection.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Completes the WebSocket handshake with <paramref name="subProtocol"/> (null: none)
    /// and returns the server end.</summary>
    public async Task<WebSocket> AcceptWebSocketAsync(string? subProtocol)
    {
        if (!IsWebSocketRequest) throw new InvalidOperationException("not a WebSocket request");
        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(request.Get("Sec-WebSocket-Key")!.Trim() + WebSocketGuid)));
        List<KeyValuePair<string, string>> headers = [new("Sec-WebSocket-Accept", accept)];
        if (subProtocol is not null) headers.Add(new("Sec-WebSocket-Protocol", subProtocol));
        var stream = await UpgradeAsync("websocket", headers).ConfigureAwait(false);
        return WebSocket.CreateFromStream(stream, new WebSocketCreationOptions
        {
            IsServer = true,
            SubProtocol = subProtocol,
            KeepAliveInterval = WebSocketKeepAlive,
        });
    }

    internal static string Reason(int status) => status switch
    {
        101 => "Switching Protocols",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
}
