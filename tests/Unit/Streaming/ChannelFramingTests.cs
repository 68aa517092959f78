using System.Net.WebSockets;
using System.Text;
using CriRuntime.Streaming.WebSockets;

namespace CriRuntime.Tests.Unit.Streaming;

public class ChannelFramingTests
{
    [Fact]
    public void BinaryFraming_PrefixesOneChannelByte()
    {
        var m = ChannelProtocol.V4.Encode(2, "err"u8);
        Assert.Equal(new byte[] { 2, (byte)'e', (byte)'r', (byte)'r' }, m);
        var (channel, data) = ChannelProtocol.V5.Decode(m);
        Assert.Equal(2, channel);
        Assert.Equal("err", Encoding.ASCII.GetString(data));
    }

    [Fact]
    public void Base64Framing_PrefixesAnAsciiDigit_AndEncodesTheData()
    {
        var m = ChannelProtocol.V4Base64.Encode(1, "hello"u8);
        Assert.Equal("1aGVsbG8=", Encoding.ASCII.GetString(m));
        var (channel, data) = ChannelProtocol.V1Base64.Decode("0aGk="u8);
        Assert.Equal(0, channel);
        Assert.Equal("hi", Encoding.ASCII.GetString(data));
        Assert.Throws<InvalidDataException>(() => ChannelProtocol.V4Base64.Decode("x!!"u8));
    }

    [Fact]
    public void Negotiation_TakesTheClientsFirstSupportedProtocol()
    {
        Assert.Equal(ChannelProtocol.V5, ChannelProtocol.Negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"], ChannelProtocol.RemoteCommand));
        Assert.Equal(ChannelProtocol.V4Base64, ChannelProtocol.Negotiate(["nope", "v4.base64.channel.k8s.io"], ChannelProtocol.RemoteCommand));
        Assert.Null(ChannelProtocol.Negotiate(["v5.channel.k8s.io"], ChannelProtocol.PortForward));
        Assert.Equal("", ChannelProtocol.Negotiate([], ChannelProtocol.PortForward)!.Name);
    }

    [Fact]
    public async Task V5CloseSignal_EndsThatChannelsInput_Only()
    {
        var (a, b) = TestDuplex.Pair();
        using var server = WebSocket.CreateFromStream(a, isServer: true, subProtocol: null, keepAliveInterval: Timeout.InfiniteTimeSpan);
        using var client = WebSocket.CreateFromStream(b, isServer: false, subProtocol: null, keepAliveInterval: Timeout.InfiniteTimeSpan);
        var mux = new ChannelWebSocket(server, ChannelProtocol.V5, 5);
        var run = mux.RunAsync(CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        await client.SendAsync(new byte[] { 0, (byte)'a', (byte)'b' }, WebSocketMessageType.Binary, true, cts.Token);
        await client.SendAsync(new byte[] { 4, (byte)'{' }, WebSocketMessageType.Binary, true, cts.Token);
        await client.SendAsync(new byte[] { 255, 0 }, WebSocketMessageType.Binary, true, cts.Token);
        var stdin = new MemoryStream();
        await mux.Input(0).CopyToAsync(stdin, cts.Token);
        Assert.Equal("ab", Encoding.ASCII.GetString(stdin.ToArray()));
        var buf = new byte[8];
        Assert.Equal(1, await mux.Input(4).ReadAsync(buf, cts.Token)); // channel 4 still open

        await mux.Output(1).WriteAsync("out"u8.ToArray(), cts.Token);
        var rbuf = new byte[16];
        var r = await client.ReceiveAsync(rbuf, cts.Token);
        Assert.Equal(new byte[] { 1, (byte)'o', (byte)'u', (byte)'t' }, rbuf[..r.Count]);

        await client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
        await run.WaitAsync(cts.Token);
        await mux.CloseAsync(cts.Token);
        Assert.Equal(WebSocketMessageType.Close, (await client.ReceiveAsync(rbuf, cts.Token)).MessageType);
    }

    /// <summary>A channel's writer cancelled while its message is on the wire (the port-forward
    /// relay's token fires as the client's close arrives): the message is finished and the socket
    /// stays open for the close handshake. .NET's WebSocket, given that token, aborts the
    /// connection, and the client sees it end without a close frame.</summary>
    [Fact]
    public async Task SendCancelledMidWrite_FinishesTheMessage_AndTheCloseHandshakeStillHappens()
    {
        var (a, b) = TestDuplex.Pair();
        var gated = new GatedWrites(a);
        using var server = WebSocket.CreateFromStream(gated, isServer: true, subProtocol: null, keepAliveInterval: Timeout.InfiniteTimeSpan);
        using var client = WebSocket.CreateFromStream(b, isServer: false, subProtocol: null, keepAliveInterval: Timeout.InfiniteTimeSpan);
        var mux = new ChannelWebSocket(server, ChannelProtocol.V4, 2);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        using var writer = new CancellationTokenSource();
        var send = mux.SendAsync(0, "data"u8.ToArray(), writer.Token);
        await gated.WriteStarted.Task.WaitAsync(timeout.Token);
        await writer.CancelAsync();
        gated.Open();
        await send.WaitAsync(timeout.Token);
        Assert.Equal(WebSocketState.Open, server.State);

        var buf = new byte[16];
        var r = await client.ReceiveAsync(buf, timeout.Token);
        Assert.Equal("\0data", Encoding.ASCII.GetString(buf, 0, r.Count));
        // A send whose token is already cancelled does not start.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => mux.SendAsync(0, "late"u8.ToArray(), writer.Token));
        await mux.CloseAsync(timeout.Token);
        r = await client.ReceiveAsync(buf, timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, r.MessageType);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }

    /// <summary>Holds every write until <see cref="Open"/>.</summary>
    private sealed class GatedWrites(Stream inner) : CriRuntime.IO.NonSeekableStream
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource WriteStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public void Open() => _gate.TrySetResult();

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override Task FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => inner.ReadAsync(buffer, ct);
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
        {
            WriteStarted.TrySetResult();
            await _gate.Task.WaitAsync(ct).ConfigureAwait(false);
            await inner.WriteAsync(buffer, ct).ConfigureAwait(false);
        }
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();
        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
