using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Threading.Channels;
using CriRuntime.Errors;
using CriRuntime.Streaming.Http;
using CriRuntime.Streaming.Spdy;
using CriRuntime.Streaming.WebSockets;

namespace CriRuntime.Streaming.PortForward;

/// <summary>Serves one port-forward session. Facts from kubelet's cri/streaming/portforward:
/// over SPDY (portforward.k8s.io) the client opens, per connection it forwards, an error stream
/// and a data stream with headers streamType (error|data), port and requestID (pairing them);
/// failures are written as text on the error stream. Over WebSocket (v4.channel.k8s.io framing)
/// the ports come from the query (?port=N, repeated or comma separated) or the CRI request; port
/// i uses channel 2i for data and 2i+1 for errors, and the first message on each carries the port
/// as 2 bytes little endian.</summary>
public sealed partial class PortForwardServer(IStreamingRuntime runtime, ILogger<PortForwardServer> log)
{
    public static readonly IReadOnlyList<string> SpdyProtocols = ["portforward.k8s.io"];

    /// <summary>How long the second stream of a pair may take after the first (kubelet's default).</summary>
    public TimeSpan StreamCreationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Serves the session; <paramref name="stopping"/> (daemon shutdown) aborts it.</summary>
    public async Task ServeAsync(HttpExchange exchange, Cri.V1.PortForwardRequest request, PodTarget pod, CancellationToken stopping)
    {
        if (exchange.IsWebSocketRequest)
            await ServeWebSocketAsync(exchange, request, pod, stopping).ConfigureAwait(false);
        else
            await ServeSpdyAsync(exchange, pod, stopping).ConfigureAwait(false);
    }

    private async Task ServeSpdyAsync(HttpExchange exchange, PodTarget pod, CancellationToken stopping)
    {
        var accepted = await SpdyUpgrade.AcceptAsync(exchange, SpdyProtocols).ConfigureAwait(false);
        if (accepted is null) return;
        await using var connection = accepted.Value.Connection;
        var reading = connection.RunAsync(CancellationToken.None);
        using var abort = stopping.Register(() => _ = connection.DisposeAsync().AsTask());
        await ServeSpdyStreamsAsync(connection, pod).ConfigureAwait(false);
        await connection.DisposeAsync().ConfigureAwait(false);
        await reading.ConfigureAwait(false);
    }

    /// <summary>Pairs the client's streams and forwards each pair until the client leaves.</summary>
    internal async Task ServeSpdyStreamsAsync(SpdyConnection connection, PodTarget pod)
    {
        // Half-made pairs by request id; shared with their expiry timers, so always under the lock.
        var pending = new Dictionary<string, (SpdyStream? Data, SpdyStream? Error)>(StringComparer.Ordinal);
        var tasks = new List<Task>();
        try
        {
            await foreach (var stream in connection.IncomingStreams.ReadAllAsync(connection.Closed).ConfigureAwait(false))
            {
                var type = stream.Headers.Get("streamType");
                if (type is not ("data" or "error"))
                {
                    await stream.Reset(RstStatus.ProtocolError).ConfigureAwait(false);
                    continue;
                }
                var id = RequestId(stream, type);
                (SpdyStream? Data, SpdyStream? Error) pair;
                bool duplicate = false, complete = false;
                lock (pending)
                {
                    pair = pending.GetValueOrDefault(id);
                    duplicate = type == "data" ? pair.Data is not null : pair.Error is not null;
                    if (!duplicate)
                    {
                        pair = type == "data" ? pair with { Data = stream } : pair with { Error = stream };
                        complete = pair.Data is not null && pair.Error is not null;
                        if (complete) pending.Remove(id);
                        else pending[id] = pair;
                    }
                }
                if (duplicate)
                    await stream.Reset(RstStatus.ProtocolError).ConfigureAwait(false);
                else if (complete)
                    tasks.Add(ForwardSpdyPairAsync(pod, pair.Data!, pair.Error!, connection.Closed));
                else
                    tasks.Add(ExpireAsync(pending, id, pod.Id, connection.Closed));
                tasks.RemoveAll(t => t.IsCompleted);
            }
        }
        catch (OperationCanceledException) { }
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>A pair whose second stream does not come in time is refused on its error stream
    /// (if it has one) and reset, as kubelet does.</summary>
    private async Task ExpireAsync(Dictionary<string, (SpdyStream? Data, SpdyStream? Error)> pending, string id, string podId, CancellationToken ct)
    {
        try { await Task.Delay(StreamCreationTimeout, ct).ConfigureAwait(false); }
        catch (OperationCanceledException) { return; }
        (SpdyStream? Data, SpdyStream? Error) pair;
        lock (pending)
            if (!pending.Remove(id, out pair)) return;
        if (pair.Error is not null)
        {
            await ReportAsync(pair.Error, podId, pair.Error.Headers.Get("port") ?? "", "timed out waiting for the client to create the stream pair").ConfigureAwait(false);
            await pair.Error.CloseWriteAsync().ConfigureAwait(false);
        }
        if (pair.Data is not null) await pair.Data.Reset(RstStatus.Cancel).ConfigureAwait(false);
    }

    /// <summary>The requestID header; clients older than it pair by stream id (error first, then
    /// data two ids later), as kubelet does.</summary>
    private static string RequestId(SpdyStream stream, string type) =>
        stream.Headers.Get("requestID") is { Length: > 0 } id ? id
        : (type == "error" ? stream.Id : stream.Id - 2).ToString(CultureInfo.InvariantCulture);

    private async Task ForwardSpdyPairAsync(PodTarget pod, SpdyStream data, SpdyStream error, CancellationToken ct)
    {
        var portHeader = data.Headers.Get("port") ?? "";
        try
        {
            if (!ushort.TryParse(portHeader, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port == 0)
                throw Fail.InvalidArgument($"invalid port header {portHeader}");
            await ForwardAsync(pod, port, data, error, ct).ConfigureAwait(false);
        }
        catch (CriException e)
        {
            await ReportAsync(error, pod.Id, portHeader, e.Message).ConfigureAwait(false);
        }
        finally
        {
            await error.CloseWriteAsync().ConfigureAwait(false);
            await data.CloseWriteAsync().ConfigureAwait(false);
        }
    }

    private async Task ForwardAsync(PodTarget pod, int port, Stream data, Stream error, CancellationToken ct)
    {
        try
        {
            await runtime.PortForwardAsync(pod, port, data, ct).ConfigureAwait(false);
        }
        catch (CriException e)
        {
            await ReportAsync(error, pod.Id, port.ToString(CultureInfo.InvariantCulture), e.Message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away mid-forward; nobody to tell.
        }
    }

    private async Task ReportAsync(Stream error, string podId, string port, string message)
    {
        LogForwardFailed(log, podId, port, message);
        try
        {
            await error.WriteAsync(Encoding.UTF8.GetBytes($"error forwarding port {port} to pod {podId}: {message}")).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException) { }
    }

    private async Task ServeWebSocketAsync(HttpExchange exchange, Cri.V1.PortForwardRequest request, PodTarget pod, CancellationToken stopping)
    {
        List<int> ports;
        try
        {
            ports = QueryPorts(exchange.Request.QueryValues("port")) ?? [.. request.Port];
        }
        catch (FormatException e)
        {
            await exchange.RespondAsync(400, e.Message + "\n").ConfigureAwait(false);
            return;
        }
        if (ports.Count == 0 || ports.Any(p => p is < 1 or > 65535))
        {
            await exchange.RespondAsync(400, "query parameter \"port\" is required (1-65535)\n").ConfigureAwait(false);
            return;
        }
        var protocol = ChannelProtocol.Negotiate(exchange.WebSocketRequestedProtocols, ChannelProtocol.PortForward);
        if (protocol is null)
        {
            await exchange.RespondAsync(400, "unable to upgrade: the server accepts subprotocols v4.channel.k8s.io and v4.base64.channel.k8s.io\n").ConfigureAwait(false);
            return;
        }
        using var socket = await exchange.AcceptWebSocketAsync(protocol.Name.Length > 0 ? protocol.Name : null).ConfigureAwait(false);
        using var abort = stopping.Register(socket.Abort);
        await ServeChannelsAsync(new ChannelWebSocket(socket, protocol, ports.Count * 2), pod, ports).ConfigureAwait(false);
    }

    internal async Task ServeChannelsAsync(ChannelWebSocket mux, PodTarget pod, IReadOnlyList<int> ports)
    {
        using var gone = new CancellationTokenSource();
        var reading = mux.RunAsync(CancellationToken.None).ContinueWith(_ => gone.Cancel(), TaskScheduler.Default);
        var forwards = new List<Task>();
        for (var i = 0; i < ports.Count; i++)
        {
            var prefix = new byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(prefix, (ushort)ports[i]);
            await mux.SendAsync((byte)(2 * i), prefix, gone.Token).ConfigureAwait(false);
            await mux.SendAsync((byte)(2 * i + 1), prefix, gone.Token).ConfigureAwait(false);
            forwards.Add(ForwardAsync(pod, ports[i], mux.Duplex((byte)(2 * i)), mux.Output((byte)(2 * i + 1)), gone.Token));
        }
        await Task.WhenAll(forwards).ConfigureAwait(false);
        await mux.CloseAsync(CancellationToken.None).ConfigureAwait(false);
        await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
    }

    /// <summary>?port=80&amp;port=443 or ?port=80,443; null when the query names none.</summary>
    private static List<int>? QueryPorts(IReadOnlyList<string> values)
    {
        if (values.Count == 0) return null;
        var ports = new List<int>();
        foreach (var value in values)
            foreach (var p in value.Split(','))
            {
                if (!ushort.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port == 0)
                    throw new FormatException($"unable to parse \"{p}\" as a port");
                ports.Add(port);
            }
        return ports;
    }

    [LoggerMessage(EventId = 610, Level = LogLevel.Information, Message = "port forward to pod {PodId} port {Port} failed: {Message}")]
    private static partial void LogForwardFailed(ILogger log, string podId, string port, string message);
}
