using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Streaming;
using CriRuntime.Streaming.PortForward;
using CriRuntime.Streaming.RemoteCommand;
using CriRuntime.Streaming.Spdy;
using CriRuntime.Streaming.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Streaming;

/// <summary>The streaming server over real HTTP on loopback (StreamingHttpServer, as the stream server wires it) with
/// the fake backend: exec and attach through the SPDY upgrade and through WebSocket, as kubectl
/// would reach them once containers exist.</summary>
public sealed class StreamingServerTests : IAsyncLifetime
{
    private readonly FakeRuntime _fake = new();
    private readonly CriRuntime.Streaming.Host.StreamSessions _sessions = new();
    private readonly CancellationTokenSource _stop = new();
    private StreamingListener _listener = null!;
    private StreamingServer _server = null!;
    private StreamingHttpServer _http = null!;
    private Task _accepting = Task.CompletedTask;

    public Task InitializeAsync()
    {
        _listener = StreamingListener.Bind(new StreamingSection { Address = "127.0.0.1", Port = 0 });
        var loggers = NullLoggerFactory.Instance;
        _server = new StreamingServer(_listener, new StreamingRequestCache(TimeProvider.System, TimeSpan.FromMinutes(1)),
            new RemoteCommandServer(_fake, loggers.CreateLogger<RemoteCommandServer>()),
            new PortForwardServer(_fake, loggers.CreateLogger<PortForwardServer>()), _sessions);
        _http = new StreamingHttpServer(_listener.Socket, _server.ServeAsync, loggers.CreateLogger<StreamingHttpServer>());
        _accepting = _http.RunAsync(_stop.Token);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        await _accepting;
        await _http.DrainAsync(TimeSpan.FromSeconds(5));
        _listener.Dispose();
    }

    /// <summary>POST with the SPDY upgrade headers; the status line and, on 101, the socket.</summary>
    private static async Task<(int Status, string Head, Stream? Upgraded)> Upgrade(string url, string[] protocols, CancellationToken ct)
    {
        var uri = new Uri(url);
        var tcp = new TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port, ct);
        var s = tcp.GetStream();
        var request = $"POST {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            + string.Concat(protocols.Select(p => $"X-Stream-Protocol-Version: {p}\r\n")) + "\r\n";
        await s.WriteAsync(Encoding.ASCII.GetBytes(request), ct);
        var text = await ReadResponseHeadAsync(s, ct);
        var status = int.Parse(text.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        return (status, text, status == 101 ? s : null);
    }

    /// <summary>The response head, byte by byte so that nothing after it is consumed.</summary>
    private static async Task<string> ReadResponseHeadAsync(Stream s, CancellationToken ct)
    {
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || !(head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
        {
            if (await s.ReadAsync(one, ct) == 0) break;
            head.Add(one[0]);
        }
        return Encoding.ASCII.GetString([.. head]);
    }

    [Fact]
    public async Task Exec_OverSpdyUpgrade_StreamsAndReportsExitCode3()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var url = _server.Exec(new ExecRequest { ContainerId = "c1", Cmd = { "exit", "3" }, Stdin = true, Stdout = true, Stderr = true }).Url;
        var (status, head, upgraded) = await Upgrade(url, ["v4.channel.k8s.io", "v3.channel.k8s.io"], cts.Token);
        Assert.Equal(101, status);
        Assert.Contains("X-Stream-Protocol-Version: v4.channel.k8s.io", head);
        Assert.Contains("Upgrade: SPDY/3.1", head);

        await using var client = new SpdyConnection(upgraded!, isServer: false);
        var reading = client.RunAsync(CancellationToken.None);
        Task<SpdyStream> Open(string type) => client.OpenStreamAsync(new SpdyHeaders().Add("streamType", type), cts.Token);
        var error = await Open("error");
        var stdin = await Open("stdin");
        var stdout = await Open("stdout");
        var stderr = await Open("stderr");
        await stdin.WriteAsync("typed"u8.ToArray(), cts.Token);
        await stdin.CloseWriteAsync(cts.Token);
        Assert.Equal("typed", await ReadAll(stdout, cts.Token));
        Assert.Equal("to stderr\n", await ReadAll(stderr, cts.Token));
        Assert.Equal(3, KubeStatus.Parse(Encoding.UTF8.GetBytes(await ReadAll(error, cts.Token)))!.ReportedExitCode);
        await reading.WaitAsync(cts.Token); // the server ends the session (GOAWAY, close)
        Assert.Contains("exec c1 exit 3 tty=False", _fake.Calls);
    }

    [Fact]
    public async Task Attach_OverWebSocketV5_EchoesAndReportsSuccess()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var url = _server.Attach(new AttachRequest { ContainerId = "c2", Stdin = true, Stdout = true }).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        ws.Options.AddSubProtocol("v4.channel.k8s.io");
        await ws.ConnectAsync(new Uri("ws" + url["http".Length..]), cts.Token);
        Assert.Equal("v5.channel.k8s.io", ws.SubProtocol);
        await ws.SendAsync(new byte[] { 0, (byte)'h', (byte)'i' }, WebSocketMessageType.Binary, true, cts.Token);
        await ws.SendAsync(new byte[] { 255, 0 }, WebSocketMessageType.Binary, true, cts.Token);
        var channels = new Dictionary<int, string>();
        var buffer = new byte[4096];
        while (true)
        {
            var r = await ws.ReceiveAsync(buffer, cts.Token);
            if (r.MessageType == WebSocketMessageType.Close) break;
            channels[buffer[0]] = channels.GetValueOrDefault(buffer[0], "") + Encoding.UTF8.GetString(buffer, 1, r.Count - 1);
        }
        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
        Assert.Equal("hi", channels[1]);
        Assert.Equal("""{"metadata":{},"status":"Success"}""", channels[3]);
        Assert.Contains("attach c2 tty=False", _fake.Calls);
    }

    [Fact]
    public async Task Exec_OverSpdy_WithoutProtocolHeader_FallsBackToV1_MessageOnlyErrors()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var url = _server.Exec(new ExecRequest { ContainerId = "c1", Cmd = { "exit", "2" }, Stdout = true }).Url;
        var (status, head, upgraded) = await Upgrade(url, [], cts.Token);
        Assert.Equal(101, status);
        Assert.DoesNotContain("X-Stream-Protocol-Version", head);
        await using var client = new SpdyConnection(upgraded!, isServer: false);
        var reading = client.RunAsync(CancellationToken.None);
        var error = await client.OpenStreamAsync(new SpdyHeaders().Add("streamType", "error"), cts.Token);
        var stdout = await client.OpenStreamAsync(new SpdyHeaders().Add("streamType", "stdout"), cts.Token);
        Assert.Equal("no stdin\n", await ReadAll(stdout, cts.Token));
        Assert.Equal("command terminated with non-zero exit code: exit status 2", await ReadAll(error, cts.Token));
        await reading.WaitAsync(cts.Token);
    }

    [Fact]
    public async Task UnsupportedProtocol_Is403_ListingWhatIsAccepted_AndTheTokenIsSpent()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var url = _server.Exec(new ExecRequest { ContainerId = "c1", Cmd = { "ls" }, Stdout = true }).Url;
        var (status, head, _) = await Upgrade(url, ["v9.channel.k8s.io"], cts.Token);
        Assert.Equal(403, status);
        Assert.Contains("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io", head);
        Assert.Equal(404, (await Upgrade(url, ["v4.channel.k8s.io"], cts.Token)).Status);
    }

    /// <summary>Sends <paramref name="request"/> as it is; the whole response (the server closes).</summary>
    private async Task<string> RawAsync(byte[] request, CancellationToken ct)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(_listener.EndPoint, ct);
        var s = tcp.GetStream();
        await s.WriteAsync(request, ct);
        var m = new MemoryStream();
        await s.CopyToAsync(m, ct);
        return Encoding.UTF8.GetString(m.ToArray());
    }

    private Task<string> RawAsync(string request, CancellationToken ct) => RawAsync(Encoding.ASCII.GetBytes(request), ct);

    [Fact]
    public async Task UnknownPaths_Are404_OtherMethods405_AndATokenOnAnotherKindsPathIsSpent()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var response = await RawAsync("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", cts.Token);
        Assert.StartsWith("HTTP/1.1 404 Not Found\r\n", response);
        Assert.EndsWith("\r\n\r\n404 page not found\n", response);
        Assert.StartsWith("HTTP/1.1 404 ", await RawAsync("GET /exec/ HTTP/1.1\r\n\r\n", cts.Token));
        Assert.StartsWith("HTTP/1.1 404 ", await RawAsync("GET /exec/a/b HTTP/1.1\r\n\r\n", cts.Token));

        var token = new Uri(_server.Exec(new ExecRequest { ContainerId = "c", Cmd = { "true" }, Stdout = true }).Url).AbsolutePath.Split('/')[2];
        var put = await RawAsync($"PUT /exec/{token} HTTP/1.1\r\n\r\n", cts.Token);
        Assert.StartsWith("HTTP/1.1 405 ", put);
        Assert.Contains("\r\nAllow: GET, POST\r\n", put);
        // The 405 left it unused; presented on /attach/ it is refused and spent.
        Assert.StartsWith("HTTP/1.1 404 ", await RawAsync($"GET /attach/{token} HTTP/1.1\r\n\r\n", cts.Token));
        Assert.StartsWith("HTTP/1.1 404 ", await RawAsync($"GET /exec/{token} HTTP/1.1\r\n\r\n", cts.Token));
        Assert.Empty(_fake.Calls);
    }

    [Fact]
    public async Task MalformedOrOversizedHeads_AreRefused_WithTheReason()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var bad = await RawAsync("GET /exec/t HTTP/9\r\n\r\n", cts.Token);
        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", bad);
        Assert.Contains("unsupported HTTP version", bad);
        var huge = await RawAsync("GET /exec/t HTTP/1.1\r\nX-Filler: " + new string('a', HttpRequestHead.MaxSize) + "\r\n\r\n", cts.Token);
        Assert.StartsWith("HTTP/1.1 431 ", huge);
    }

    [Fact]
    public async Task ASpdyRequestWithoutUpgradeHeaders_Is400()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var path = new Uri(_server.Exec(new ExecRequest { ContainerId = "c", Cmd = { "true" }, Stdout = true }).Url).AbsolutePath;
        var response = await RawAsync($"POST {path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n", cts.Token);
        Assert.StartsWith("HTTP/1.1 400 ", response);
        Assert.Contains("missing upgrade headers", response);
    }

    /// <summary>A client that sends its first WebSocket frames in the same write as the handshake,
    /// before the 101: the bytes past the head reach the session.</summary>
    [Fact]
    public async Task WebSocketFramesSentWithTheHandshake_AreNotLost()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var path = new Uri(_server.Attach(new AttachRequest { ContainerId = "c3", Stdin = true, Stdout = true }).Url).AbsolutePath;
        var frames = new MemoryStream();
        using (var capture = WebSocket.CreateFromStream(frames, isServer: false, subProtocol: null, keepAliveInterval: Timeout.InfiniteTimeSpan))
        {
            await capture.SendAsync(new byte[] { 0, (byte)'e', (byte)'a', (byte)'r', (byte)'l', (byte)'y' }, WebSocketMessageType.Binary, true, cts.Token);
            await capture.SendAsync(new byte[] { 255, 0 }, WebSocketMessageType.Binary, true, cts.Token);
        }
        var handshake = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n");
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(_listener.EndPoint, cts.Token);
        var s = tcp.GetStream();
        await s.WriteAsync(handshake.Concat(frames.ToArray()).ToArray(), cts.Token);
        var text = await ReadResponseHeadAsync(s, cts.Token);
        Assert.StartsWith("HTTP/1.1 101 Switching Protocols\r\n", text);
        // RFC 6455's own example key and accept value.
        Assert.Contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", text);
        Assert.Contains("\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n", text);

        using var ws = WebSocket.CreateFromStream(s, isServer: false, subProtocol: "v5.channel.k8s.io", keepAliveInterval: Timeout.InfiniteTimeSpan);
        var stdout = "";
        var buffer = new byte[4096];
        while (true)
        {
            var r = await ws.ReceiveAsync(buffer, cts.Token);
            if (r.MessageType == WebSocketMessageType.Close) break;
            if (buffer[0] == 1) stdout += Encoding.UTF8.GetString(buffer, 1, r.Count - 1);
        }
        Assert.Equal("early", stdout);
    }

    private static async Task<string> ReadAll(Stream s, CancellationToken ct)
    {
        var m = new MemoryStream();
        await s.CopyToAsync(m, ct);
        return Encoding.UTF8.GetString(m.ToArray());
    }
}
