using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using CriRuntime.Streaming;
using CriRuntime.Streaming.RemoteCommand;
using CriRuntime.Streaming.Spdy;
using CriRuntime.Streaming.WebSockets;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Streaming;

/// <summary>The exec/attach protocol paths end to end over in-memory connections, with a fake backend.</summary>
public class RemoteCommandTests
{
    private static async Task<byte[]> ReadAll(Stream s, CancellationToken ct)
    {
        var m = new MemoryStream();
        await s.CopyToAsync(m, ct);
        return m.ToArray();
    }

    private sealed record SpdyRun(KubeStatus? ServerStatus, string Stdout, string Stderr, byte[] Error);

    private static async Task<SpdyRun> RunSpdy(FakeRuntime fake, RemoteCommandRequest request, int version, Func<SpdyStream?, Task>? resize = null)
    {
        var (a, b) = TestDuplex.Pair();
        await using var client = new SpdyConnection(a, isServer: false);
        await using var server = new SpdyConnection(b, isServer: true);
        var runs = Task.WhenAll(client.RunAsync(CancellationToken.None), server.RunAsync(CancellationToken.None));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var rc = new RemoteCommandServer(fake, NullLogger<RemoteCommandServer>.Instance);
        var serving = rc.ServeSpdyStreamsAsync(server, request, version);

        // As client-go does: the error stream first, then the others.
        Task<SpdyStream> Open(string type) => client.OpenStreamAsync(new SpdyHeaders().Add("streamType", type), cts.Token);
        var error = await Open("error");
        var stdin = request.Stdin ? await Open("stdin") : null;
        var stdout = request.Stdout ? await Open("stdout") : null;
        var stderr = request.Stderr ? await Open("stderr") : null;
        var resizeStream = request.Tty && version >= 3 ? await Open("resize") : null;
        await error.CloseWriteAsync(cts.Token);
        if (resize is not null) await resize(resizeStream);
        if (stdin is not null)
        {
            await stdin.WriteAsync("hello over spdy"u8.ToArray(), cts.Token);
            await stdin.CloseWriteAsync(cts.Token);
        }
        var outText = stdout is null ? "" : Encoding.UTF8.GetString(await ReadAll(stdout, cts.Token));
        var errText = stderr is null ? "" : Encoding.UTF8.GetString(await ReadAll(stderr, cts.Token));
        var errorBytes = await ReadAll(error, cts.Token);
        var status = await serving.WaitAsync(cts.Token);
        await server.DisposeAsync();
        await client.DisposeAsync();
        await runs.WaitAsync(cts.Token);
        return new SpdyRun(status, outText, errText, errorBytes);
    }

    [Fact]
    public async Task SpdyV4_Exec_Exit0_StreamsStdoutStderr_AndReportsSuccess()
    {
        var fake = new FakeRuntime();
        var r = await RunSpdy(fake, new RemoteCommandRequest(new ContainerTarget("c1"), ["exit", "0"], true, true, true, false), 4);
        Assert.Equal("hello over spdy", r.Stdout);
        Assert.Equal("to stderr\n", r.Stderr);
        Assert.Equal("""{"metadata":{},"status":"Success"}""", Encoding.UTF8.GetString(r.Error));
        Assert.Equal(["exec c1 exit 0 tty=False"], fake.Calls);
    }

    [Fact]
    public async Task SpdyV4_Exec_Exit3_ReportsNonZeroExitCode_AsClientGoReadsIt()
    {
        var r = await RunSpdy(new FakeRuntime(), new RemoteCommandRequest(new ContainerTarget("c1"), ["exit", "3"], true, true, true, false), 4);
        using var doc = JsonDocument.Parse(r.Error);
        var root = doc.RootElement;
        Assert.Equal("Failure", root.GetProperty("status").GetString());
        Assert.Equal("NonZeroExitCode", root.GetProperty("reason").GetString());
        var cause = root.GetProperty("details").GetProperty("causes")[0];
        Assert.Equal("ExitCode", cause.GetProperty("reason").GetString());
        Assert.Equal("3", cause.GetProperty("message").GetString());
        Assert.Equal(3, KubeStatus.Parse(r.Error)!.ReportedExitCode);
    }

    [Fact]
    public async Task SpdyV2_Failure_WritesOnlyTheMessage_AndSuccessNothing()
    {
        var ok = await RunSpdy(new FakeRuntime(), new RemoteCommandRequest(new ContainerTarget("c1"), ["exit", "0"], false, true, false, false), 2);
        Assert.Empty(ok.Error);
        var failed = await RunSpdy(new FakeRuntime(), new RemoteCommandRequest(new ContainerTarget("c1"), ["exit", "3"], false, true, false, false), 2);
        Assert.Contains("non-zero exit code", Encoding.UTF8.GetString(failed.Error));
    }

    [Fact]
    public async Task SpdyV4_Tty_DecodesResizeMessages()
    {
        var fake = new FakeRuntime { ExpectResizes = 2 };
        var r = await RunSpdy(fake, new RemoteCommandRequest(new ContainerTarget("c1"), ["sh"], true, true, false, true), 4, async resize =>
        {
            Assert.NotNull(resize);
            // Go's json.Encoder: one object per resize, newline separated; split across writes.
            await resize!.WriteAsync("{\"Width\":80,\"Height\":24}\n{\"Width\":1"u8.ToArray());
            await resize.WriteAsync("00,\"Height\":40}\n"u8.ToArray());
            // Left open, as client-go leaves it until the session ends.
        });
        Assert.Equal("hello over spdy", r.Stdout);
        Assert.Equal([new TerminalSize(80, 24), new TerminalSize(100, 40)], fake.Resizes);
    }

    [Fact]
    public async Task SpdyAttach_UsesTheAttachBackend()
    {
        var fake = new FakeRuntime();
        var r = await RunSpdy(fake, new RemoteCommandRequest(new ContainerTarget("c9"), null, true, true, false, false), 4);
        Assert.Equal("hello over spdy", r.Stdout);
        Assert.Equal(["attach c9 tty=False"], fake.Calls);
    }

    private static async Task<(KubeStatus Status, Dictionary<int, string> Channels, List<int> Order)> RunWebSocket(
        FakeRuntime fake, RemoteCommandRequest request, ChannelProtocol protocol)
    {
        var (a, b) = TestDuplex.Pair();
        using var serverSocket = WebSocket.CreateFromStream(a, isServer: true, subProtocol: protocol.Name, keepAliveInterval: Timeout.InfiniteTimeSpan);
        using var client = WebSocket.CreateFromStream(b, isServer: false, subProtocol: protocol.Name, keepAliveInterval: Timeout.InfiniteTimeSpan);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var rc = new RemoteCommandServer(fake, NullLogger<RemoteCommandServer>.Instance);
        var serving = rc.ServeChannelsAsync(new ChannelWebSocket(serverSocket, protocol, 5), request);

        async Task Send(byte channel, byte[] data) =>
            await client.SendAsync(protocol.Encode(channel, data), protocol.Base64 ? WebSocketMessageType.Text : WebSocketMessageType.Binary, true, cts.Token);
        if (request.Tty) await Send(4, "{\"Width\":120,\"Height\":50}"u8.ToArray());
        if (request.Stdin) await Send(0, "hello over websocket"u8.ToArray());
        if (protocol.SupportsClose) await client.SendAsync(new byte[] { 255, 0 }, WebSocketMessageType.Binary, true, cts.Token);

        var channels = new Dictionary<int, string>();
        var order = new List<int>();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var message = new MemoryStream();
            WebSocketReceiveResult r;
            do
            {
                r = await client.ReceiveAsync(buffer, cts.Token);
                message.Write(buffer, 0, r.Count);
            } while (!r.EndOfMessage);
            if (r.MessageType == WebSocketMessageType.Close) break;
            var (channel, data) = protocol.Decode(message.ToArray());
            order.Add(channel);
            channels[channel] = channels.GetValueOrDefault(channel, "") + Encoding.UTF8.GetString(data);
        }
        if (client.State == WebSocketState.CloseReceived) await client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
        return (await serving.WaitAsync(cts.Token), channels, order);
    }

    [Fact]
    public async Task WebSocketV5_Exec_Exit3_StdinClosedByChannel255()
    {
        var (status, channels, order) = await RunWebSocket(new FakeRuntime(), new RemoteCommandRequest(new ContainerTarget("c1"), ["exit", "3"], true, true, true, false), ChannelProtocol.V5);
        Assert.Equal(1, order[0]); // the empty "connected" message on stdout
        Assert.Equal("hello over websocket", channels[1]);
        Assert.Equal("to stderr\n", channels[2]);
        Assert.Equal(3, KubeStatus.Parse(Encoding.UTF8.GetBytes(channels[3]))!.ReportedExitCode);
        Assert.Equal(3, status.ReportedExitCode);
    }

    [Fact]
    public async Task WebSocketV4Base64_Exec_Exit0_WithTty_ReportsResize()
    {
        // v4 cannot half-close stdin, so this exec takes none.
        var fake = new FakeRuntime { ExpectResizes = 1 };
        var (_, channels, _) = await RunWebSocket(fake, new RemoteCommandRequest(new ContainerTarget("c1"), ["exit", "0"], false, true, false, true), ChannelProtocol.V4Base64);
        Assert.Equal("no stdin\n", channels[1]);
        Assert.Equal("""{"metadata":{},"status":"Success"}""", channels[3]);
        Assert.Equal([new TerminalSize(120, 50)], fake.Resizes);
    }

    [Fact]
    public async Task BackendFailure_BecomesAnInternalErrorStatus_NotACrash()
    {
        var root = Directory.CreateTempSubdirectory("criruntime-unit-").FullName;
        try
        {
            // A container whose shim is gone: no control socket in its state directory.
            var runtime = new CriRuntime.Streaming.StreamingRuntime(null!, new CriRuntime.Containers.ShimRunner(new CriRuntime.Config.CriRuntimeConfig()));
            var status = await new RemoteCommandRequest(new ContainerTarget("c1", root), ["ls"], false, true, false, false)
                .RunAsync(runtime, new RemoteCommandRequest.Streams(null, Stream.Null, null, null), CancellationToken.None);
            Assert.Equal("InternalError", status.Reason);
            Assert.Contains("container c1: the container is not running", status.Message);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}

public class PortForwardSessionTests
{
    [Fact]
    public async Task HalfAPair_TimesOut_WithAMessageOnItsErrorStream()
    {
        var (a, b) = TestDuplex.Pair();
        await using var client = new SpdyConnection(a, isServer: false);
        await using var server = new SpdyConnection(b, isServer: true);
        var runs = Task.WhenAll(client.RunAsync(CancellationToken.None), server.RunAsync(CancellationToken.None));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var pf = new CriRuntime.Streaming.PortForward.PortForwardServer(new FakeRuntime(), NullLogger<CriRuntime.Streaming.PortForward.PortForwardServer>.Instance)
        {
            StreamCreationTimeout = TimeSpan.FromMilliseconds(200),
        };
        var serving = pf.ServeSpdyStreamsAsync(server, new PodTarget("pod1"));
        var error = await client.OpenStreamAsync(new SpdyHeaders().Add("streamType", "error").Add("port", "80").Add("requestID", "1"), cts.Token);
        await error.CloseWriteAsync(cts.Token);
        var m = new MemoryStream();
        await error.CopyToAsync(m, cts.Token);
        Assert.Equal("error forwarding port 80 to pod pod1: timed out waiting for the client to create the stream pair", Encoding.UTF8.GetString(m.ToArray()));
        await client.DisposeAsync();
        await serving.WaitAsync(cts.Token);
        await runs.WaitAsync(cts.Token);
    }
}
