using System.Net.Sockets;
using System.Runtime.InteropServices;
using CriRuntime.Config;
using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Interop;
using CriRuntime.Server;
using CriRuntime.Streaming.Http;
using CriRuntime.Streaming.PortForward;
using CriRuntime.Streaming.RemoteCommand;
using Google.Protobuf;

namespace CriRuntime.Streaming.Host;

/// <summary>How `criruntime-stream-server` was asked to run.</summary>
public sealed record StreamServerOptions(string State, string Address, int Port, string LogLevel);

/// <summary>`criruntime-stream-server`: the long-lived process that serves exec, attach and
/// port-forward sessions, so that they outlive the daemon (a kill -9 of the daemon cuts nothing:
/// the client's TCP connection is this process's, the process's stdio the shim's). It runs in its
/// own session, started by the daemon on the first Exec/Attach/PortForward and adopted by the next
/// daemon; one per state directory (an flock on STATE/stream-server.lock). It owns the [streaming]
/// listener and a control socket (STATE/stream-server.sock, <see cref="StreamControlOps"/>) on
/// which daemons register requests and get their URLs. It exits when no daemon is connected and
/// no session is open (<see cref="StreamSessions"/>), after draining, and on SIGTERM.</summary>
public static partial class StreamServerHost
{
    public const string SocketName = "stream-server.sock", LockName = "stream-server.lock", LogName = "stream-server.log";

    /// <summary>The daemon that started the server connects right after the ready line; if it
    /// died in between, nobody will.</summary>
    private static readonly TimeSpan FirstDaemonTimeout = TimeSpan.FromSeconds(30);

    public const string BinaryName = "criruntime-stream-server";

    private const string Usage = "usage: criruntime-stream-server --state DIR --address IP --port N (0-65535) [--log-level LEVEL]\n"
        + "  serves exec/attach/port-forward sessions; started by the daemon (docs/streaming.md)\n";

    /// <summary>The binary's entry point: its flags, then <see cref="RunAsync"/>.</summary>
    public static async Task<int> MainAsync(string[] args)
    {
        var options = ParseArgs(args);
        if (options is null)
        {
            Console.Error.Write(Usage);
            return 2;
        }
        try
        {
            return await RunAsync(options);
        }
        catch (StartupException e)
        {
            Console.Error.WriteLine($"criruntime-stream-server: {e.Message}");
            return 1;
        }
    }

    /// <summary>--state, --address, --port (also as --flag=value) and an optional --log-level; null
    /// when one is missing, unknown or malformed.</summary>
    internal static StreamServerOptions? ParseArgs(IReadOnlyList<string> args)
    {
        string? state = null, address = null, port = null, level = null;
        for (var i = 0; i < args.Count; i++)
        {
            var (flag, value) = args[i].IndexOf('=') is > 2 and var eq && args[i].StartsWith("--", StringComparison.Ordinal)
                ? (args[i][..eq], args[i][(eq + 1)..])
                : (args[i], i + 1 < args.Count ? args[++i] : null);
            if (value is null) return null;
            switch (flag)
            {
                case "--state": state = value; break;
                case "--address": address = value; break;
                case "--port": port = value; break;
                case "--log-level": level = value; break;
                default: return null;
            }
        }
        if (state is null || address is null
            || !int.TryParse(port, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var p) || p > 65535)
            return null;
        return new StreamServerOptions(state, address, p, level ?? "info");
    }

    public static async Task<int> RunAsync(StreamServerOptions options)
    {
        if (Libc.Setsid() < 0 && Errno.Current != Errno.EPERM) throw Errno.Last("setsid", ""); // EPERM: already a session leader
        Directory.CreateDirectory(options.State);
        // The standard descriptors leave the daemon (its pipes die with it) before anything uses
        // them (.NET's Console keeps a dup of fd 1 from its first use); the ready line goes to the
        // daemon's pipe through a descriptor of its own.
        using var ready = Detach(Path.Combine(options.State, LogName));
        try
        {
            return await ServeAsync(options, ready);
        }
        catch (Exception e) when (e is StartupException or IOException && !ready.IsClosed)
        {
            // The daemon reads the reason from its pipe (stderr is the log file by now).
            WriteReady(ready, new StreamControlResponse { Error = e.Message });
            throw;
        }
    }

    private static void WriteReady(Microsoft.Win32.SafeHandles.SafeFileHandle ready, StreamControlResponse line)
    {
        using var stream = new FileStream(ready, FileAccess.Write, bufferSize: 0);
        stream.Write(StreamControlCodec.Encode(line));
    }

    private static async Task<int> ServeAsync(StreamServerOptions options, Microsoft.Win32.SafeHandles.SafeFileHandle ready)
    {
        var socketPath = Path.Combine(options.State, SocketName);
        using var lockFd = await LockAsync(Path.Combine(options.State, LockName));
        using var listener = StreamingListener.Bind(new StreamingSection { Address = options.Address, Port = options.Port });
        var control = BindControl(socketPath);

        // No web framework and no host: the streaming endpoints need one HTTP request head per
        // connection (Http/), and this process stays small while it waits (docs/streaming.md).
        using var loggers = LoggerFactory.Create(b =>
        {
            Daemon.ConfigureLogging(b, options.LogLevel);
            b.AddFilter("Microsoft", LogLevel.Warning);
        });
        var log = loggers.CreateLogger("criruntime.stream-server");
        var sessions = new StreamSessions();
        var runtime = new StreamingRuntime(new SandboxPortForwarder(), new ShimRunner(new CriRuntimeConfig()));
        var server = new StreamingServer(listener, new StreamingRequestCache(TimeProvider.System, new StreamingSection().TokenTtl),
            new RemoteCommandServer(runtime, loggers.CreateLogger<RemoteCommandServer>()),
            new PortForwardServer(runtime, loggers.CreateLogger<PortForwardServer>()), sessions);
        // Memory goes back once the server is quiet (a second after start-up, a control request
        // or the last session): the GC's free pages and the clean code pages the work faulted in
        // (MemoryTrim.Idle). Nothing runs periodically here, so they stay out until the next use.
        using var trim = new IdleTrim(MemoryTrim.Idle, () => GC.GetTotalAllocatedBytes(), threshold: 0);
        trim.Enter();
        var http = new StreamingHttpServer(listener.Socket, async exchange =>
        {
            trim.Enter();
            try { await server.ServeAsync(exchange); }
            finally { trim.Exit(); }
        }, loggers.CreateLogger<StreamingHttpServer>());
        // SIGTERM/SIGINT: end the sessions and exit. A drain or an idle exit gets here with no session open.
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            sessions.Abort();
        }
        using var stopAccepting = new CancellationTokenSource();
        var accepting = http.RunAsync(stopAccepting.Token);

        // The ready line, the only thing written to the daemon's pipe: both sockets listen now.
        WriteReady(ready, Hello(listener, sessions));
        LogServing(log, Environment.ProcessId, listener.BaseUrl, socketPath);
        trim.Exit();

        var released = 0;
        void Release()
        {
            // Stop taking daemons and connections, then free the lock for a successor. The socket
            // path is unlinked while the lock is held, so it is never a successor's.
            if (Interlocked.Exchange(ref released, 1) != 0) return;
            try { File.Delete(socketPath); } catch (IOException) { }
            control.Dispose();
            try { listener.Socket.Shutdown(SocketShutdown.Receive); } catch (SocketException) { }
            lockFd.Dispose();
        }

        using var stopControl = new CancellationTokenSource();
        var handler = new ControlHandler(server, sessions, listener, () => { Release(); LogDraining(log, sessions.OpenSessions); }, trim, log);
        var serving = ServeControlAsync(control, handler, stopControl.Token);
        _ = Task.Delay(FirstDaemonTimeout, stopControl.Token).ContinueWith(_ => sessions.NoDaemonCame(), TaskScheduler.Default);

        await sessions.Done;
        LogExiting(log, sessions.Daemons, sessions.OpenSessions, sessions.Draining);
        Release();
        await stopControl.CancelAsync();
        await stopAccepting.CancelAsync();
        await accepting;
        // As a host's shutdown timeout: sessions that ignore the abort are cut when the process exits.
        await http.DrainAsync(TimeSpan.FromSeconds(5));
        try { await serving; } catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { }
        return 0;
    }

    internal static StreamControlResponse Hello(StreamingListener listener, StreamSessions sessions) => new()
    {
        Ok = true,
        Pid = Environment.ProcessId,
        Version = Cri.CriRuntimeService.BuildVersion,
        Address = listener.EndPoint.Address.ToString(),
        Port = listener.EndPoint.Port,
        BaseUrl = listener.BaseUrl,
        Sessions = sessions.OpenSessions,
    };

    /// <summary>The per-state-directory lock. A draining or exiting predecessor frees it before
    /// it stops serving its last sessions, so this waits (in the kernel, not by polling) only for
    /// the moment that takes, bounded.</summary>
    private static async Task<FdHandle> LockAsync(string path)
    {
        var fd = FdHandle.Open(path, Libc.O_RDWR | Libc.O_CREAT, 0x180 /* 0600 */);
        var locking = Task.Run(() =>
        {
            while (Libc.Flock(fd.Fd, Libc.LOCK_EX) < 0)
                if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() != Errno.EINTR) throw Errno.Last("flock", path);
        });
        if (await Task.WhenAny(locking, Task.Delay(TimeSpan.FromSeconds(10))) != locking)
            throw new StartupException($"another stream server holds {path}");
        await locking;
        return fd;
    }

    private static Socket BindControl(string path)
    {
        // Holding the lock: whatever socket file is there is a dead server's.
        try { File.Delete(path); } catch (IOException) { }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(16);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new StartupException($"stream server: cannot listen on {path}: {e.Message}", e);
        }
    }

    /// <summary>stdin from /dev/null, stdout and stderr to the log file (truncated: it is this
    /// server's); returns the original stdout (the daemon's pipe) for the ready line.</summary>
    private static Microsoft.Win32.SafeHandles.SafeFileHandle Detach(string logPath)
    {
        var stdout = new Microsoft.Win32.SafeHandles.SafeFileHandle(Libc.DupCloexec(1, "stdout"), ownsHandle: true);
        using var devNull = FdHandle.Open("/dev/null", Libc.O_RDWR);
        using var logFile = FdHandle.Open(logPath, Libc.O_RDWR | Libc.O_CREAT | 0x200 /* O_TRUNC */, 0x180 /* 0600 */);
        Libc.Dup2(devNull.Fd, 0, "/dev/null");
        Libc.Dup2(logFile.Fd, 1, logPath);
        Libc.Dup2(logFile.Fd, 2, logPath);
        return stdout;
    }

    private static async Task ServeControlAsync(Socket control, ControlHandler handler, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket connection;
            try { connection = await control.AcceptAsync(ct); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            _ = handler.ServeAsync(connection, ct);
        }
    }

    /// <summary>One control connection: requests in, answers out, in order.</summary>
    private sealed class ControlHandler(StreamingServer server, StreamSessions sessions, StreamingListener listener, Action drain, IdleTrim trim, ILogger log)
    {
        public async Task ServeAsync(Socket socket, CancellationToken ct)
        {
            var daemon = false;
            await using var stream = new NetworkStream(socket, ownsSocket: true);
            var reader = new ControlLineReader(stream);
            try
            {
                while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
                {
                    StreamControlResponse answer;
                    trim.Enter();
                    try
                    {
                        answer = Handle(StreamControlCodec.DecodeRequest(line), ref daemon);
                    }
                    catch (System.Text.Json.JsonException e)
                    {
                        answer = new StreamControlResponse { Error = $"bad control request: {e.Message}" };
                    }
                    finally
                    {
                        trim.Exit();
                    }
                    // Not cancellable: the answer to a bye must get out even as the server exits.
                    await stream.WriteAsync(StreamControlCodec.Encode(answer), CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or InvalidDataException or SocketException)
            {
                LogControlEnded(log, e.Message);
            }
            finally
            {
                if (daemon) sessions.DaemonLeft();
            }
        }

        private StreamControlResponse Handle(StreamControlRequest request, ref bool daemon)
        {
            switch (request.Op)
            {
                case StreamControlOps.Hello:
                    if (sessions.Draining) return new StreamControlResponse { Error = "draining: this stream server takes no new daemon" };
                    if (!daemon)
                    {
                        daemon = true;
                        sessions.DaemonConnected();
                    }
                    return Hello(listener, sessions);
                case StreamControlOps.Register:
                    if (sessions.Draining) return new StreamControlResponse { Error = "draining: this stream server takes no new session" };
                    try
                    {
                        var url = server.Register(Registration(request), request.TtlSeconds is > 0 and var s ? TimeSpan.FromSeconds(s) : null);
                        return new StreamControlResponse { Ok = true, Url = url };
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidProtocolBufferException or CriException)
                    {
                        return new StreamControlResponse { Error = e.Message };
                    }
                case StreamControlOps.Bye:
                    {
                        var exiting = sessions.IdleWithout(daemon ? 1 : 0);
                        var open = sessions.OpenSessions;
                        if (daemon)
                        {
                            daemon = false;
                            sessions.DaemonLeft();
                        }
                        return new StreamControlResponse { Ok = true, Pid = Environment.ProcessId, Sessions = open, Exiting = exiting };
                    }
                case StreamControlOps.Drain:
                    drain();
                    sessions.Drain();
                    return new StreamControlResponse { Ok = true, Pid = Environment.ProcessId, Sessions = sessions.OpenSessions, Exiting = sessions.OpenSessions == 0 };
                default:
                    return new StreamControlResponse { Error = $"op: unknown \"{request.Op}\"" };
            }
        }

        private static StreamRegistration Registration(StreamControlRequest r)
        {
            var bytes = r.Request ?? throw new ArgumentException("register: request is required");
            IMessage message = r.Kind switch
            {
                "exec" => ExecRequest.Parser.ParseFrom(bytes),
                "attach" => AttachRequest.Parser.ParseFrom(bytes),
                "portforward" => PortForwardRequest.Parser.ParseFrom(bytes),
                _ => throw new ArgumentException($"register: kind \"{r.Kind}\" is not exec, attach or portforward"),
            };
            return new StreamRegistration(message, r.Container, r.Pod);
        }
    }

    [LoggerMessage(EventId = 650, Level = LogLevel.Information, Message = "stream server {Pid} serving on {Url}, control {Socket}")]
    private static partial void LogServing(ILogger log, int pid, string url, string socket);

    [LoggerMessage(EventId = 651, Level = LogLevel.Information, Message = "draining: no new sessions; exiting after the {Sessions} open ones")]
    private static partial void LogDraining(ILogger log, int sessions);

    [LoggerMessage(EventId = 652, Level = LogLevel.Information, Message = "exiting: {Daemons} daemons connected, {Sessions} sessions open, draining {Draining}")]
    private static partial void LogExiting(ILogger log, int daemons, int sessions, bool draining);

    [LoggerMessage(EventId = 653, Level = LogLevel.Debug, Message = "control connection ended: {Message}")]
    private static partial void LogControlEnded(ILogger log, string message);
}
