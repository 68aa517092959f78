using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Interop;
using CriRuntime.Streaming.Host;
using Google.Protobuf;

namespace CriRuntime.Streaming;

/// <summary>The daemon's link to the stream server (<see cref="StreamServerHost"/>): adopts the one
/// running for this state directory at start (or has it drain when it no longer fits the config or
/// this build), starts one on the first streaming request otherwise, and registers each request
/// for a URL. One control connection, kept open for the daemon's life (that is how the server
/// knows a daemon is there), one request at a time. Not IDisposable on purpose: the host
/// disposes its services when it stops, and <see cref="DetachAsync"/> runs after that.</summary>
public sealed partial class StreamServerClient(CriRuntimeConfig config, StreamTargets targets, ILogger<StreamServerClient> log, ConfigSource? configSource = null)
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Connection? _connection;

    public StreamTargets Targets => targets;
    private string SocketPath => Path.Combine(config.State, StreamServerHost.SocketName);

    /// <summary>The URL of the server, once one is connected (for the log).</summary>
    public string? BaseUrl => _connection?.Hello.BaseUrl;

    public async Task<ExecResponse> ExecAsync(ExecRequest request, CancellationToken ct) =>
        new() { Url = await RegisterAsync("exec", request, targets.Container(request.ContainerId), null, ct) };

    public async Task<AttachResponse> AttachAsync(AttachRequest request, CancellationToken ct) =>
        new() { Url = await RegisterAsync("attach", request, targets.Container(request.ContainerId), null, ct) };

    public async Task<PortForwardResponse> PortForwardAsync(PortForwardRequest request, CancellationToken ct) =>
        new() { Url = await RegisterAsync("portforward", request, null, targets.Pod(request.PodSandboxId), ct) };

    /// <summary>At daemon start: connect to a running stream server, if there is one. None running
    /// costs nothing (it starts with the first streaming request).</summary>
    public async Task AdoptAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            _connection ??= await ConnectRunningAsync(ct);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<string> RegisterAsync(string kind, IMessage request, ContainerTarget? container, PodTarget? pod, CancellationToken ct)
    {
        var registration = new StreamControlRequest
        {
            Op = StreamControlOps.Register, Kind = kind, Request = request.ToByteArray(),
            Container = container, Pod = pod, TtlSeconds = (configSource?.Current ?? config).Streaming.TokenTtl.TotalSeconds,
        };
        await _gate.WaitAsync(ct);
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                _connection ??= await ConnectRunningAsync(ct) ?? await StartAsync(ct);
                try
                {
                    var answer = await _connection.CallAsync(registration, ct);
                    if (!answer.Ok || answer.Url is null) throw Fail.Unavailable($"stream server: {answer.Error}");
                    return answer.Url;
                }
                catch (Exception e) when (e is IOException or SocketException && attempt == 0)
                {
                    // It exited (idle while this daemon was not connected, or killed): a new one.
                    LogServerGone(log, e.Message);
                    _connection.Dispose();
                    _connection = null;
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Connects and says hello to the server running for this state directory; null when
    /// none runs, or when it does not fit (it is told to drain: it serves its open sessions to
    /// their end and frees the place for a new one).</summary>
    private async Task<Connection?> ConnectRunningAsync(CancellationToken ct)
    {
        if (!File.Exists(SocketPath)) return null;
        Connection? c = null;
        try
        {
            c = await Connection.OpenAsync(SocketPath, ct);
            var hello = await c.CallAsync(new StreamControlRequest { Op = StreamControlOps.Hello }, ct);
            var mismatch = StreamServerFit.Mismatch(hello, config.Streaming, Cri.CriRuntimeService.BuildVersion);
            if (mismatch is null)
            {
                c.Hello = hello;
                LogAdopted(log, hello.Pid ?? 0, hello.BaseUrl ?? "", hello.Sessions ?? 0);
                return c;
            }
            var drained = await c.CallAsync(new StreamControlRequest { Op = StreamControlOps.Drain }, ct);
            LogDrained(log, hello.Pid ?? 0, mismatch, drained.Sessions ?? 0);
            c.Dispose();
            return null;
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            // A socket file without a server behind it (it was killed): the next one replaces it.
            c?.Dispose();
            return null;
        }
    }

    /// <summary>Starts criruntime-stream-server (next to this binary) and connects once it has
    /// written its ready line: both its sockets are listening then.</summary>
    private async Task<Connection> StartAsync(CancellationToken ct)
    {
        var self = Environment.ProcessPath ?? throw Fail.Unavailable("stream server: cannot tell this program's path");
        var binary = Path.Combine(Path.GetDirectoryName(self)!, StreamServerHost.BinaryName);
        if (!File.Exists(binary)) throw Fail.Unavailable($"stream server: {binary} is missing (it is installed next to criruntime)");
        var psi = new ProcessStartInfo(binary)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[]
        {
            "--state", config.State, "--address", config.Streaming.Address,
            "--port", config.Streaming.Port.ToString(CultureInfo.InvariantCulture), "--log-level", config.LogLevel,
        })
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw Fail.Unavailable($"stream server: cannot start {binary}");
        // Kept until it exits, so that it is reaped while this daemon lives (it is our child).
        _ = process.WaitForExitAsync(CancellationToken.None).ContinueWith(_ => process.Dispose(), TaskScheduler.Default);
        process.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        string? ready;
        try
        {
            ready = await process.StandardOutput.ReadLineAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            process.Kill();
            throw Fail.Unavailable("stream server: not ready within 30s");
        }
        if (ready is null)
        {
            var stderr = await process.StandardError.ReadToEndAsync(timeout.Token);
            throw Fail.Unavailable($"stream server did not start: {stderr.Trim()}");
        }
        StreamControlResponse started;
        try { started = StreamControlCodec.DecodeResponse(System.Text.Encoding.UTF8.GetBytes(ready)); }
        catch (System.Text.Json.JsonException e) { throw Fail.Unavailable($"stream server: bad ready line \"{ready}\": {e.Message}"); }
        if (!started.Ok) throw Fail.Unavailable($"stream server did not start: {started.Error}");
        var c = await ConnectRunningAsync(ct) ?? throw Fail.Unavailable($"stream server {process.Id} started but its control socket {SocketPath} does not answer");
        LogStarted(log, process.Id, c.Hello.BaseUrl ?? "");
        return c;
    }

    /// <summary>The daemon stops cleanly: say goodbye. A server left with no daemon and no session
    /// exits; it is waited for (briefly), so nothing of this daemon outlives it needlessly.
    /// Sessions still open keep it serving.</summary>
    public async Task DetachAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (_connection is null) return;
            var bye = await _connection.CallAsync(new StreamControlRequest { Op = StreamControlOps.Bye }, CancellationToken.None);
            using var pidfd = bye.Pid is int pid ? Libc.PidfdOpen(pid) : null;
            _connection.Dispose();
            _connection = null;
            if (pidfd is null) return;
            // Exiting: wait for it. Sessions open: they may be ending right now (their containers
            // were just removed), so give them a moment, then leave them to the server.
            var exited = await Task.Run(() => Libc.PidfdWaitExit(pidfd, bye.Exiting == true ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(2)));
            if (!exited) LogLeftSessions(log, bye.Pid ?? 0, bye.Sessions ?? 0);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }
        finally
        {
            _connection?.Dispose();
            _connection = null;
            _gate.Release();
        }
    }

    private sealed class Connection : IDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;
        private readonly ControlLineReader _reader;

        public StreamControlResponse Hello { get; set; } = new();

        private Connection(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: false);
            _reader = new ControlLineReader(_stream);
        }

        public static async Task<Connection> OpenAsync(string path, CancellationToken ct)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                return new Connection(socket);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        public async Task<StreamControlResponse> CallAsync(StreamControlRequest request, CancellationToken ct)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(CallTimeout);
            try
            {
                await _stream.WriteAsync(StreamControlCodec.Encode(request), timeout.Token);
                var line = await _reader.ReadLineAsync(timeout.Token)
                    ?? throw new IOException($"stream server closed the control connection ({request.Op})");
                return StreamControlCodec.DecodeResponse(line);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new IOException($"stream server: no answer to {request.Op} within {CallTimeout.TotalSeconds}s");
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new IOException($"stream server: bad answer to {request.Op}: {e.Message}", e);
            }
        }

        public void Dispose()
        {
            _stream.Dispose();
            _socket.Dispose();
        }
    }

    [LoggerMessage(EventId = 640, Level = LogLevel.Information, Message = "adopted stream server {Pid} on {Url} ({Sessions} sessions open)")]
    private static partial void LogAdopted(ILogger log, int pid, string url, int sessions);

    [LoggerMessage(EventId = 641, Level = LogLevel.Information, Message = "stream server {Pid} told to drain: {Reason} ({Sessions} sessions open finish there)")]
    private static partial void LogDrained(ILogger log, int pid, string reason, int sessions);

    [LoggerMessage(EventId = 642, Level = LogLevel.Information, Message = "started stream server {Pid} on {Url}")]
    private static partial void LogStarted(ILogger log, int pid, string url);

    [LoggerMessage(EventId = 643, Level = LogLevel.Information, Message = "stream server gone ({Message}); starting a new one")]
    private static partial void LogServerGone(ILogger log, string message);

    [LoggerMessage(EventId = 644, Level = LogLevel.Information, Message = "stream server {Pid} keeps serving {Sessions} open sessions after this daemon")]
    private static partial void LogLeftSessions(ILogger log, int pid, int sessions);
}
