using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Streaming;

/// <summary>The streaming server against the real daemon: port forwarding into a real pod's
/// network namespace over SPDY/3.1 and WebSocket with our own clients, single-use URLs, errors
/// reported on the error stream, and the CRI's refusals of bad exec/attach/port-forward input.</summary>
public class PortForwardTests
{
    private static PodSandboxConfig Pod(string name) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "e2e", Uid = Guid.NewGuid().ToString() },
        Hostname = name,
        Linux = new LinuxPodSandboxConfig(),
    };

    /// <summary>A running daemon with one pod, and the pod's netns path.</summary>
    private sealed class PodFixture : IAsyncDisposable
    {
        public required DaemonProcess Daemon { get; init; }
        public required TestNetwork Network { get; init; }
        public required CriClient Cri { get; init; }
        public required string PodId { get; init; }
        public required string NetNs { get; init; }

        public static async Task<PodFixture> StartAsync(string name)
        {
            var d = new DaemonProcess();
            var net = new TestNetwork(d);
            await d.StartAsync();
            var c = d.Client();
            var id = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Pod(name) })).PodSandboxId;
            var status = await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = id, Verbose = true });
            var netns = JsonDocument.Parse(status.Info["info"]).RootElement.GetProperty("netNs").GetString()!;
            return new PodFixture { Daemon = d, Network = net, Cri = c, PodId = id, NetNs = netns };
        }

        public async Task<string> UrlAsync(params int[] ports)
        {
            var request = new PortForwardRequest { PodSandboxId = PodId };
            request.Port.AddRange(ports);
            return (await Cri.Runtime.PortForwardAsync(request)).Url;
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                // A fresh channel: a test may have restarted the daemon under the old one.
                using var c = Daemon.Client();
                await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = PodId });
                await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = PodId });
            }
            catch (RpcException e)
            {
                throw new InvalidOperationException($"removing pod {PodId}: {e.Status}\ndaemon output:\n{Daemon.Output}", e);
            }
            finally
            {
                Cri.Dispose();
                Daemon.Dispose();
                Network.Dispose();
            }
        }
    }

    private static async Task<byte[]> ReadExactly(Stream s, int count, CancellationToken ct)
    {
        var buffer = new byte[count];
        await s.ReadExactlyAsync(buffer, ct);
        return buffer;
    }

    private static async Task<string> ReadToEnd(Stream s, CancellationToken ct)
    {
        var m = new MemoryStream();
        await s.CopyToAsync(m, ct);
        return Encoding.UTF8.GetString(m.ToArray());
    }

    private static async Task EchoOverSpdy(string url, int port, string text, CancellationToken ct)
    {
        await using var session = await SpdyClientSession.ConnectAsync(url, ["portforward.k8s.io"], ct);
        Assert.Equal("portforward.k8s.io", session.Protocol);
        var (data, error) = await session.ForwardAsync(port, 0, ct);
        var payload = Encoding.UTF8.GetBytes(text);
        await data.WriteAsync(payload, ct);
        Assert.Equal(text, Encoding.UTF8.GetString(await ReadExactly(data, payload.Length, ct)));
        // Half-close: the echo server sees EOF and closes; the forward ends cleanly, no error.
        await data.CloseWriteAsync(ct);
        Assert.Equal("", await ReadToEnd(data, ct));
        Assert.Equal("", await ReadToEnd(error, ct));
    }

    private static async Task EchoOverWebSocket(string url, int port, string text, CancellationToken ct, bool portInQuery = true)
    {
        using var ws = await WebSocketPortForward.ConnectAsync(url, portInQuery ? [port] : [], ct);
        // The first message on the data and the error channel carries the port, little endian.
        Assert.Equal(WebSocketPortForward.PortPrefix(port), await ws.ReadChannelAsync(0, 2, ct));
        Assert.Equal(WebSocketPortForward.PortPrefix(port), await ws.ReadChannelAsync(1, 2, ct));
        var payload = Encoding.UTF8.GetBytes(text);
        await ws.SendAsync(0, payload, ct);
        Assert.Equal(text, Encoding.UTF8.GetString((await ws.ReadChannelAsync(0, 2 + payload.Length, ct))[2..]));
        await ws.CloseAsync(ct);
    }

    [Fact]
    public async Task PortForward_OverSpdy_ReachesAServerOnThePodsLoopback()
    {
        await using var f = await PodFixture.StartAsync("pf-spdy");
        using var echo = PodEchoServer.Start(f.NetNs, 18081);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        // The server is in the pod's namespace only: the host's loopback has nothing there.
        using (var probe = new TcpClient())
            await Assert.ThrowsAsync<SocketException>(async () => await probe.ConnectAsync("127.0.0.1", 18081, cts.Token));

        var url = await f.UrlAsync(18081);
        Assert.Matches(@"^http://127\.0\.0\.1:\d+/portforward/[A-Za-z0-9_-]{22}$", url);
        await EchoOverSpdy(url, 18081, "hello from the host, echoed inside the pod\n", cts.Token);
    }

    [Fact]
    public async Task PortForward_OverWebSocket_ReachesAServerOnThePodsLoopback()
    {
        await using var f = await PodFixture.StartAsync("pf-ws");
        using var echo = PodEchoServer.Start(f.NetNs, 18082);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await EchoOverWebSocket(await f.UrlAsync(18082), 18082, "over a websocket", cts.Token);
        // Without ?port= the ports of the CRI request are used.
        await EchoOverWebSocket(await f.UrlAsync(18082), 18082, "ports from the request", cts.Token, portInQuery: false);
    }

    [Fact]
    public async Task StreamingUrl_IsSingleUse_AndUnknownTokensAre404()
    {
        await using var f = await PodFixture.StartAsync("pf-once");
        using var echo = PodEchoServer.Start(f.NetNs, 18083);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var url = await f.UrlAsync(18083);
        await EchoOverSpdy(url, 18083, "first use", cts.Token);

        var again = await Assert.ThrowsAsync<HttpRequestException>(() => SpdyClientSession.ConnectAsync(url, ["portforward.k8s.io"], cts.Token));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, again.StatusCode);
        using var http = new HttpClient();
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync(url, cts.Token)).StatusCode);
        var baseUrl = url[..url.IndexOf("/portforward/", StringComparison.Ordinal)];
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync(baseUrl + "/exec/not-a-token", cts.Token)).StatusCode);
        // A used WebSocket URL is refused too.
        var wsUrl = await f.UrlAsync(18083);
        await EchoOverWebSocket(wsUrl, 18083, "once", cts.Token);
        await Assert.ThrowsAnyAsync<System.Net.WebSockets.WebSocketException>(() => WebSocketPortForward.ConnectAsync(wsUrl, [18083], cts.Token));
    }

    [Fact]
    public async Task TwentyConcurrentSessions_AllEcho()
    {
        await using var f = await PodFixture.StartAsync("pf-many");
        using var echo = PodEchoServer.Start(f.NetNs, 18084);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var urls = new List<string>();
        for (var i = 0; i < 20; i++) urls.Add(await f.UrlAsync(18084));
        await Task.WhenAll(urls.Select((url, i) => i % 2 == 0
            ? EchoOverSpdy(url, 18084, $"spdy session {i} " + new string('x', 1000 * i), cts.Token)
            : EchoOverWebSocket(url, 18084, $"websocket session {i} " + new string('y', 1000 * i), cts.Token)));
    }

    [Fact]
    public async Task PortNothingListensOn_IsReportedOnTheErrorStream_AndTheServerCarriesOn()
    {
        await using var f = await PodFixture.StartAsync("pf-refused");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using (var session = await SpdyClientSession.ConnectAsync(await f.UrlAsync(), ["portforward.k8s.io"], cts.Token))
        {
            var (data, error) = await session.ForwardAsync(18085, 1, cts.Token);
            var message = await ReadToEnd(error, cts.Token);
            Assert.Contains("error forwarding port 18085 to pod " + f.PodId, message);
            Assert.Contains("ConnectionRefused", message);
            Assert.Equal("", await ReadToEnd(data, cts.Token));
            // The same session still forwards once something listens.
            using var echo = PodEchoServer.Start(f.NetNs, 18085);
            var (data2, _) = await session.ForwardAsync(18085, 2, cts.Token);
            await data2.WriteAsync("now it listens"u8.ToArray(), cts.Token);
            Assert.Equal("now it listens", Encoding.UTF8.GetString(await ReadExactly(data2, 14, cts.Token)));
        }
        // Over WebSocket the refusal arrives on the port's error channel.
        using var ws = await WebSocketPortForward.ConnectAsync(await f.UrlAsync(18086), [], cts.Token);
        var err = Encoding.UTF8.GetString(await ws.ReadChannelAsync(1, 2 + "error forwarding port 18086".Length, cts.Token));
        Assert.EndsWith("error forwarding port 18086", err);
        Assert.Equal(0, f.Daemon.ExitCode ?? 0);
    }

    [Fact]
    public async Task DaemonStop_NeitherWaitsForOpenSessions_NorEndsThem()
    {
        await using var f = await PodFixture.StartAsync("pf-stop");
        using var echo = PodEchoServer.Start(f.NetNs, 18087);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await using var session = await SpdyClientSession.ConnectAsync(await f.UrlAsync(), ["portforward.k8s.io"], cts.Token);
        var (data, _) = await session.ForwardAsync(18087, 0, cts.Token);
        await data.WriteAsync("idle soon"u8.ToArray(), cts.Token);
        Assert.Equal("idle soon", Encoding.UTF8.GetString(await ReadExactly(data, 9, cts.Token)));

        // The session is the stream server's: the daemon stops promptly and the session goes on
        // (docs/streaming.md), before and after the daemon is back.
        var stopping = System.Diagnostics.Stopwatch.StartNew();
        await f.Daemon.StopAsync();
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(10), $"stop took {stopping.Elapsed} with a session open");
        Assert.Equal(0, f.Daemon.ExitCode);
        await data.WriteAsync("still here"u8.ToArray(), cts.Token);
        Assert.Equal("still here", Encoding.UTF8.GetString(await ReadExactly(data, 10, cts.Token)));
        await f.Daemon.StartAsync(); // the pod survives the restart; the fixture removes it
        await data.WriteAsync("and now"u8.ToArray(), cts.Token);
        Assert.Equal("and now", Encoding.UTF8.GetString(await ReadExactly(data, 7, cts.Token)));
        await data.CloseWriteAsync(cts.Token);
        Assert.Equal("", await ReadToEnd(data, cts.Token));
    }

    [Fact]
    public async Task BadInput_IsRefusedAtTheRpc_NamingTheFieldOrObject()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();

        var noCmd = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.ExecAsync(new ExecRequest { ContainerId = "c0ffee", Stdout = true }));
        Assert.Equal(StatusCode.InvalidArgument, noCmd.StatusCode);
        Assert.Contains("cmd", noCmd.Status.Detail);

        var ttyStderr = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.ExecAsync(new ExecRequest { ContainerId = "c0ffee", Cmd = { "ls" }, Tty = true, Stderr = true }));
        Assert.Equal(StatusCode.InvalidArgument, ttyStderr.StatusCode);

        var noContainer = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.ExecAsync(new ExecRequest { ContainerId = "c0ffee", Cmd = { "ls" }, Stdout = true }));
        Assert.Equal(StatusCode.NotFound, noContainer.StatusCode);
        Assert.Contains("c0ffee", noContainer.Status.Detail);

        var attach = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.AttachAsync(new AttachRequest { ContainerId = "c0ffee", Stdout = true }));
        Assert.Equal(StatusCode.NotFound, attach.StatusCode);

        var noPod = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.PortForwardAsync(new PortForwardRequest { PodSandboxId = "feedface", Port = { 80 } }));
        Assert.Equal(StatusCode.NotFound, noPod.StatusCode);
        Assert.Contains("feedface", noPod.Status.Detail);

        var noId = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.PortForwardAsync(new PortForwardRequest()));
        Assert.Equal(StatusCode.InvalidArgument, noId.StatusCode);
        Assert.Contains("pod_sandbox_id", noId.Status.Detail);
    }
}
