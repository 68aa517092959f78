using System.Text;
using System.Threading.Channels;
using CriRuntime.Streaming.Http;
using CriRuntime.Streaming.Spdy;
using CriRuntime.Streaming.WebSockets;

namespace CriRuntime.Streaming.RemoteCommand;

/// <summary>Serves one exec or attach over SPDY (channel.k8s.io v1-v4) or WebSocket (v1, v4, v5 and
/// base64 variants). Facts from kubelet's cri/streaming/remotecommand: over SPDY the client opens
/// one stream per requested channel, named by the streamType header (error, stdin, stdout, stderr,
/// and resize with a TTY from v3 on); over WebSocket the channels are numbered stdin 0, stdout 1,
/// stderr 2, error 3, resize 4. v4+ reports the outcome as metav1.Status JSON on the error stream;
/// older protocols write only a failure's message.</summary>
public sealed partial class RemoteCommandServer(IStreamingRuntime runtime, ILogger<RemoteCommandServer> log)
{
    /// <summary>v5 over SPDY is v4 (its close signal is WebSocket only); kubelet accepts it so.</summary>
    public static readonly IReadOnlyList<string> SpdyProtocols = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

    /// <summary>How long a SPDY client has to open all its streams (kubelet's default).</summary>
    public TimeSpan StreamCreationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    private const int StdinChannel = 0, StdoutChannel = 1, StderrChannel = 2, ErrorChannel = 3, ResizeChannel = 4;

    /// <summary>Serves the session; <paramref name="stopping"/> (daemon shutdown) aborts it.</summary>
    public async Task ServeAsync(HttpExchange exchange, RemoteCommandRequest request, CancellationToken stopping)
    {
        if (exchange.IsWebSocketRequest)
            await ServeWebSocketAsync(exchange, request, stopping).ConfigureAwait(false);
        else
            await ServeSpdyAsync(exchange, request, stopping).ConfigureAwait(false);
    }

    private async Task ServeSpdyAsync(HttpExchange exchange, RemoteCommandRequest request, CancellationToken stopping)
    {
        var accepted = await SpdyUpgrade.AcceptAsync(exchange, SpdyProtocols).ConfigureAwait(false);
        if (accepted is null) return;
        var (connection, protocol) = accepted.Value;
        await using var owned = connection;
        var reading = connection.RunAsync(CancellationToken.None);
        using var abort = stopping.Register(() => _ = connection.DisposeAsync().AsTask());
        var version = protocol switch { "v5.channel.k8s.io" or "v4.channel.k8s.io" => 4, "v3.channel.k8s.io" => 3, "v2.channel.k8s.io" => 2, _ => 1 };
        var session = await ServeSpdyStreamsAsync(connection, request, version).ConfigureAwait(false);
        if (session is null) LogStreamsTimedOut(log, request.ContainerId, StreamCreationTimeout.TotalSeconds);
        await connection.DisposeAsync().ConfigureAwait(false);
        await reading.ConfigureAwait(false);
    }

    /// <summary>Waits for the client's streams, runs the command, reports the status. Null when the
    /// client did not open its streams in time.</summary>
    internal async Task<KubeStatus?> ServeSpdyStreamsAsync(SpdyConnection connection, RemoteCommandRequest request, int version)
    {
        var expected = 1 + (request.Stdin ? 1 : 0) + (request.Stdout ? 1 : 0) + (request.Stderr ? 1 : 0) + (request.Tty && version >= 3 ? 1 : 0);
        var streams = new Dictionary<string, SpdyStream>(StringComparer.OrdinalIgnoreCase);
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(connection.Closed))
        {
            timeout.CancelAfter(StreamCreationTimeout);
            try
            {
                while (streams.Count < expected)
                {
                    var stream = await connection.IncomingStreams.ReadAsync(timeout.Token).ConfigureAwait(false);
                    var type = stream.Headers.Get("streamType") ?? "";
                    if (type is not ("error" or "stdin" or "stdout" or "stderr" or "resize") || streams.ContainsKey(type))
                    {
                        await stream.Reset(Spdy.RstStatus.ProtocolError).ConfigureAwait(false);
                        continue;
                    }
                    streams[type] = stream;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
            {
                return null;
            }
        }

        var error = streams["error"];
        Channel<TerminalSize>? resize = null;
        Task resizing = Task.CompletedTask;
        // Resizes stop with the command: the client need not close its resize stream first.
        using var commandDone = CancellationTokenSource.CreateLinkedTokenSource(connection.Closed);
        if (streams.TryGetValue("resize", out var resizeStream))
        {
            resize = Channel.CreateUnbounded<TerminalSize>();
            resizing = ResizeDecoder.PumpAsync(resizeStream, resize.Writer, commandDone.Token);
        }
        var status = await request.RunAsync(runtime, new RemoteCommandRequest.Streams(
            streams.GetValueOrDefault("stdin"), streams.GetValueOrDefault("stdout"), streams.GetValueOrDefault("stderr"), resize?.Reader),
            connection.Closed).ConfigureAwait(false);
        LogFinished(log, request.IsExec ? "exec" : "attach", request.ContainerId, "spdy/v" + version, status.ReportedExitCode, status.Message);

        try
        {
            var report = StatusBytes(status, version);
            if (report.Length > 0) await error.WriteAsync(report).ConfigureAwait(false);
        }
        catch (IOException) { } // the client is gone; nobody to tell
        foreach (var s in streams.Values) await s.CloseWriteAsync().ConfigureAwait(false);
        resize?.Writer.TryComplete();
        await commandDone.CancelAsync().ConfigureAwait(false);
        await resizing.ConfigureAwait(false);
        return status;
    }

    private static byte[] StatusBytes(KubeStatus status, int version) =>
        version >= 4 ? status.ToJson()
        : status.Status == "Success" ? []
        : Encoding.UTF8.GetBytes(status.Message ?? "command failed");

    private async Task ServeWebSocketAsync(HttpExchange exchange, RemoteCommandRequest request, CancellationToken stopping)
    {
        var protocol = ChannelProtocol.Negotiate(exchange.WebSocketRequestedProtocols, ChannelProtocol.RemoteCommand);
        if (protocol is null)
        {
            await exchange.RespondAsync(400, $"unable to upgrade: none of the requested subprotocols is supported; server accepts [{string.Join(' ', ChannelProtocol.RemoteCommand.Select(p => p.Name))}]\n").ConfigureAwait(false);
            return;
        }
        using var socket = await exchange.AcceptWebSocketAsync(protocol.Name.Length > 0 ? protocol.Name : null).ConfigureAwait(false);
        using var abort = stopping.Register(socket.Abort);
        var mux = new ChannelWebSocket(socket, protocol, 5);
        await ServeChannelsAsync(mux, request).ConfigureAwait(false);
    }

    /// <summary>The WebSocket session once upgraded (unit tests drive it over an in-memory socket).</summary>
    internal async Task<KubeStatus> ServeChannelsAsync(ChannelWebSocket mux, RemoteCommandRequest request)
    {
        using var gone = new CancellationTokenSource();
        var reading = mux.RunAsync(CancellationToken.None).ContinueWith(_ => gone.Cancel(), TaskScheduler.Default);
        // An empty message on the lowest writable channel tells the client the session is up.
        await mux.SendAsync(request.Stdout ? (byte)StdoutChannel : request.Stderr ? (byte)StderrChannel : (byte)ErrorChannel, ReadOnlyMemory<byte>.Empty, gone.Token).ConfigureAwait(false);

        Channel<TerminalSize>? resize = null;
        Task resizing = Task.CompletedTask;
        if (request.Tty)
        {
            resize = Channel.CreateUnbounded<TerminalSize>();
            resizing = ResizeDecoder.PumpAsync(mux.Input(ResizeChannel), resize.Writer, gone.Token);
        }
        var status = await request.RunAsync(runtime, new RemoteCommandRequest.Streams(
            request.Stdin ? mux.Input(StdinChannel) : null,
            request.Stdout ? mux.Output(StdoutChannel) : null,
            request.Stderr ? mux.Output(StderrChannel) : null,
            resize?.Reader), gone.Token).ConfigureAwait(false);
        LogFinished(log, request.IsExec ? "exec" : "attach", request.ContainerId, "websocket/" + mux.Protocol.Name, status.ReportedExitCode, status.Message);

        try
        {
            var report = StatusBytes(status, mux.Protocol.Version);
            if (report.Length > 0) await mux.SendAsync(ErrorChannel, report, CancellationToken.None).ConfigureAwait(false);
            await mux.CloseAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.WebSockets.WebSocketException or ObjectDisposedException) { }
        resize?.Writer.TryComplete();
        // Wait for the client's close reply, but not for ever.
        await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        await gone.CancelAsync().ConfigureAwait(false);
        await resizing.ConfigureAwait(false);
        return status;
    }

    [LoggerMessage(EventId = 600, Level = LogLevel.Information, Message = "{Kind} in container {ContainerId} over {Protocol} finished: exit code {ExitCode} {Detail}")]
    private static partial void LogFinished(ILogger log, string kind, string containerId, string protocol, int? exitCode, string? detail);

    [LoggerMessage(EventId = 601, Level = LogLevel.Warning, Message = "exec/attach in container {ContainerId}: the client did not open its streams within {Seconds}s")]
    private static partial void LogStreamsTimedOut(ILogger log, string containerId, double seconds);
}
