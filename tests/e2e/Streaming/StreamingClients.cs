using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Streaming.Spdy;

namespace CriRuntime.Tests.E2E.Streaming;

/// <summary>The HTTP/1.1 upgrade a kubectl-like client makes, by hand: request line, headers,
/// then either 101 (the socket is now the upgraded protocol) or an error status.</summary>
public static class HttpUpgrade
{
    public sealed record Response(int Status, Dictionary<string, List<string>> Headers, Stream? Upgraded);

    public static async Task<Response> SendAsync(string url, IEnumerable<(string Name, string Value)> headers, CancellationToken ct, string method = "POST")
    {
        var uri = new Uri(url);
        var tcp = new TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port, ct);
        var stream = tcp.GetStream();
        var request = new StringBuilder($"{method} {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nContent-Length: 0\r\n");
        foreach (var (name, value) in headers) request.Append(name).Append(": ").Append(value).Append("\r\n");
        request.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request.ToString()), ct);

        // Byte by byte up to the blank line: whatever follows belongs to the upgraded protocol.
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || !(head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
        {
            if (await stream.ReadAsync(one, ct) == 0) throw new IOException("connection closed in the response head");
            head.Add(one[0]);
        }
        var lines = Encoding.ASCII.GetString([.. head]).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var parsed = new Dictionary<string, List<string>>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var name = line[..colon];
            if (!parsed.TryGetValue(name, out var list)) parsed[name] = list = [];
            list.Add(line[(colon + 1)..].Trim());
        }
        if (status == 101) return new Response(status, parsed, stream);
        tcp.Dispose();
        return new Response(status, parsed, null);
    }
}

/// <summary>A SPDY client session on a streaming URL (what client-go's SPDY executor and port
/// forwarder do): upgrade with X-Stream-Protocol-Version, then open streams.</summary>
public sealed class SpdyClientSession : IAsyncDisposable
{
    private readonly Task _reading;
    public SpdyConnection Connection { get; }
    public string Protocol { get; }

    private SpdyClientSession(SpdyConnection connection, string protocol)
    {
        Connection = connection;
        Protocol = protocol;
        _reading = connection.RunAsync(CancellationToken.None);
    }

    public static async Task<SpdyClientSession> ConnectAsync(string url, string[] protocols, CancellationToken ct)
    {
        var headers = new List<(string, string)> { ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1") };
        headers.AddRange(protocols.Select(p => ("X-Stream-Protocol-Version", p)));
        var response = await HttpUpgrade.SendAsync(url, headers, ct);
        if (response.Status != 101) throw new HttpRequestException($"upgrade of {url} answered {response.Status}", null, (HttpStatusCode)response.Status);
        Assert.Equal("SPDY/3.1", response.Headers["Upgrade"].Single());
        return new SpdyClientSession(new SpdyConnection(response.Upgraded!, isServer: false), response.Headers["X-Stream-Protocol-Version"].Single());
    }

    /// <summary>A port-forward connection: error stream first, then data, sharing a requestID.</summary>
    public async Task<(SpdyStream Data, SpdyStream Error)> ForwardAsync(int port, int requestId, CancellationToken ct)
    {
        SpdyHeaders H(string type) => new SpdyHeaders().Add("streamType", type)
            .Add("port", port.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .Add("requestID", requestId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var error = await Connection.OpenStreamAsync(H("error"), ct);
        // client-go closes its side of the error stream at once: it only reads from it.
        await error.CloseWriteAsync(ct);
        var data = await Connection.OpenStreamAsync(H("data"), ct);
        return (data, error);
    }

    public async ValueTask DisposeAsync()
    {
        await Connection.DisposeAsync();
        await _reading;
    }
}

/// <summary>Port forwarding over WebSocket with v4.channel.k8s.io framing.</summary>
public sealed class WebSocketPortForward : IDisposable
{
    private readonly ClientWebSocket _socket = new();
    private readonly Dictionary<int, MemoryStream> _received = [];

    public static async Task<WebSocketPortForward> ConnectAsync(string url, int[] ports, CancellationToken ct)
    {
        var pf = new WebSocketPortForward();
        pf._socket.Options.AddSubProtocol("v4.channel.k8s.io");
        var query = ports.Length == 0 ? "" : "?" + string.Join('&', ports.Select(p => $"port={p}"));
        await pf._socket.ConnectAsync(new Uri("ws" + url["http".Length..] + query), ct);
        Assert.Equal("v4.channel.k8s.io", pf._socket.SubProtocol);
        return pf;
    }

    public async Task<(byte Channel, byte[] Data)?> ReceiveAsync(CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        WebSocketReceiveResult r;
        do
        {
            r = await _socket.ReceiveAsync(buffer, ct);
            if (r.MessageType == WebSocketMessageType.Close) return null;
            message.Write(buffer, 0, r.Count);
        } while (!r.EndOfMessage);
        var bytes = message.ToArray();
        return (bytes[0], bytes[1..]);
    }

    public Task SendAsync(byte channel, ReadOnlySpan<byte> data, CancellationToken ct)
    {
        var message = new byte[data.Length + 1];
        message[0] = channel;
        data.CopyTo(message.AsSpan(1));
        return _socket.SendAsync(message, WebSocketMessageType.Binary, true, ct);
    }

    /// <summary>Reads until <paramref name="channel"/> has delivered <paramref name="count"/> bytes
    /// (after its 2-byte port prefix, which is checked).</summary>
    public async Task<byte[]> ReadChannelAsync(byte channel, int count, CancellationToken ct)
    {
        while (true)
        {
            if (_received.TryGetValue(channel, out var got) && got.Length >= count) return got.ToArray()[..count];
            var message = await ReceiveAsync(ct) ?? throw new IOException($"socket closed before channel {channel} had {count} bytes");
            if (!_received.TryGetValue(message.Channel, out var stream)) _received[message.Channel] = stream = new MemoryStream();
            stream.Write(message.Data);
        }
    }

    public async Task CloseAsync(CancellationToken ct)
    {
        if (_socket.State == WebSocketState.Open) await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, ct);
    }

    public void Dispose() => _socket.Dispose();

    public static byte[] PortPrefix(int port)
    {
        var b = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)port);
        return b;
    }
}

/// <summary>A TCP echo server on 127.0.0.1:PORT inside a pod's network namespace. The listening
/// socket is created on a thread that joined the namespace (setns), so it lives there; the
/// accept/echo loop then runs on any thread. No process is started.</summary>
public sealed partial class PodEchoServer : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    public int Port { get; }

    private PodEchoServer(Socket listener, int port)
    {
        _listener = listener;
        Port = port;
        _ = Task.Run(AcceptLoop);
    }

    public static PodEchoServer Start(string netnsPath, int port)
    {
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var ns = File.OpenHandle(netnsPath);
                if (Setns((int)ns.DangerousGetHandle(), 0x40000000 /* CLONE_NEWNET */) != 0)
                    throw new IOException($"setns {netnsPath}: errno {Marshal.GetLastPInvokeError()}");
                socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
                socket.Listen(128);
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        if (error is not null) throw error;
        return new PodEchoServer(socket!, port);
    }

    private async Task AcceptLoop()
    {
        try
        {
            while (true)
            {
                var conn = await _listener.AcceptAsync(_stop.Token);
                _ = Task.Run(async () =>
                {
                    using var c = conn;
                    using var s = new NetworkStream(c);
                    try
                    {
                        await s.CopyToAsync(s, _stop.Token);
                        c.Shutdown(SocketShutdown.Send);
                    }
                    catch (Exception e) when (e is IOException or SocketException or OperationCanceledException) { }
                });
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int Setns(int fd, int nstype);
}
