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
}
