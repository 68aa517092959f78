using System.Text;
using CriRuntime.Streaming.Http;

namespace CriRuntime.Tests.Unit.Streaming;

/// <summary>The stream server's request-head parser, on heads shaped like those client-go (SPDY),
/// kubectl's WebSocket executor and the apiserver's proxy send.</summary>
public sealed class HttpRequestHeadTests
{
    private static HttpRequestHead Parse(string head) => HttpRequestHead.Parse(Encoding.Latin1.GetBytes(head));

    [Fact]
    public void SpdyUpgrade_AsClientGoSendsIt_SplitsPathQueryAndRepeatedHeaders()
    {
        var head = Parse("POST /exec/AbC-_12?x=1 HTTP/1.1\r\nHost: 127.0.0.1:10010\r\nUser-Agent: kubectl/v1.31.0\r\n"
            + "Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            + "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n"
            + "X-Stream-Protocol-Version: v2.channel.k8s.io, channel.k8s.io\r\n\r\n");
        Assert.Equal("POST", head.Method);
        Assert.Equal("/exec/AbC-_12", head.Path);
        Assert.Equal("x=1", head.Query);
        Assert.Equal("HTTP/1.1", head.Version);
        Assert.Equal(["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"], head.Values("x-stream-protocol-version"));
        Assert.True(head.HasToken("connection", "upgrade"));
        Assert.True(head.HasToken("Upgrade", "spdy/3.1"));
        Assert.False(head.HasToken("Upgrade", "websocket"));
        Assert.Equal("kubectl/v1.31.0", head.Get("user-agent"));
        Assert.Null(head.Get("Sec-WebSocket-Key"));
    }

    [Fact]
    public void WebSocketHandshake_KeepsTheKeyAndListsSubprotocols()
    {
        var head = Parse("GET /portforward/t?port=80&port=443,8080&other=x%2Cy HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
            + "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + "Sec-WebSocket-Protocol: v4.channel.k8s.io, v4.base64.channel.k8s.io\r\n\r\n");
        Assert.Equal("dGhlIHNhbXBsZSBub25jZQ==", head.Get("Sec-WebSocket-Key"));
        Assert.True(head.HasToken("Connection", "Upgrade"));
        Assert.Equal(["v4.channel.k8s.io", "v4.base64.channel.k8s.io"], head.Values("Sec-WebSocket-Protocol"));
        Assert.Equal(["80", "443,8080"], head.QueryValues("port"));
        Assert.Equal(["x,y"], head.QueryValues("other"));
        Assert.Empty(head.QueryValues("missing"));
        var exchange = new HttpExchange(head, Stream.Null);
        Assert.True(exchange.IsWebSocketRequest);
        Assert.True(exchange.IsUpgradeRequest);
    }

    [Theory]
    [InlineData("POST /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")] // not GET
    [InlineData("GET /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")] // old version
    [InlineData("GET /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n")] // key not 16 bytes
    [InlineData("GET /exec/t HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")] // no Connection: Upgrade
    public void NotAWebSocketHandshake(string text) => Assert.False(new HttpExchange(Parse(text), Stream.Null).IsWebSocketRequest);

    [Theory]
    [InlineData("GET /exec/t\r\n\r\n", "malformed request line")]
    [InlineData("GET /exec/t HTTP/2.0\r\n\r\n", "unsupported HTTP version")]
    [InlineData("GET exec/t HTTP/1.1\r\n\r\n", "not an absolute path")]
    [InlineData("GET /exec/t HTTP/1.1\r\nNoColon\r\n\r\n", "malformed header field")]
    [InlineData("GET /exec/t HTTP/1.1\r\nBad Name: x\r\n\r\n", "malformed header field")]
    [InlineData("GET /exec/t HTTP/1.1\r\nA: b\r\n continued\r\n\r\n", "obsolete line folding")]
    public void MalformedHeads_SayWhatIsWrong(string text, string message) =>
        Assert.Contains(message, Assert.Throws<FormatException>(() => Parse(text)).Message);

    [Fact]
    public void EndOfHead_IsAfterTheEmptyLine_OrMinusOneUntilItArrives()
    {
        Assert.Equal(-1, HttpRequestHead.EndOfHead("GET / HTTP/1.1\r\nHost: x\r\n"u8));
        Assert.Equal(27, HttpRequestHead.EndOfHead("GET / HTTP/1.1\r\nHost: x\r\n\r\nSPDY-bytes"u8));
    }
}
