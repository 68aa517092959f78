using System.Net.Sockets;
using CriRuntime.Config;
using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Interop;
using CriRuntime.Server;
using CriRuntime.Streaming.PortForward;
using CriRuntime.Streaming.RemoteCommand;
using Google.Protobuf;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace CriRuntime.Streaming.Host;

/// <summary>How `criruntime stream-server` was asked to run.</summary>
public sealed record StreamServerOptions(string State, string Address, int Port, string LogLevel);

/// <summary>`criruntime stream-server`: the long-lived process that serves exec, attach and
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

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        Daemon.ConfigureLogging(builder.Logging, options.LogLevel);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(k => k.ListenHandle(listener.DuplicateForKestrel(), l => l.Protocols = HttpProtocols.Http1));
        var sessions = new StreamSessions();
        builder.Services.AddSingleton(sessions);
        builder.Services.AddSingleton(listener);
        builder.Services.AddSingleton(new StreamingRequestCache(TimeProvider.System, new StreamingSection().TokenTtl));
        builder.Services.AddSingleton(new ShimRunner(new CriRuntimeConfig()));
        builder.Services.AddSingleton<SandboxPortForwarder>();
        builder.Services.AddSingleton<IStreamingRuntime, StreamingRuntime>();
        builder.Services.AddSingleton<RemoteCommandServer>();
        builder.Services.AddSingleton<PortForwardServer>();
        builder.Services.AddSingleton<StreamingServer>();

        var app = builder.Build();
        app.UseWebSockets();
        var server = app.Services.GetRequiredService<StreamingServer>();
        server.Map(app);
        // SIGTERM/SIGINT (the host's console lifetime turns them into ApplicationStopping): end
        // the sessions and exit. A drain or an idle exit reaches StopAsync with no session open.
        app.Lifetime.ApplicationStopping.Register(sessions.Abort);
        await app.StartAsync();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("criruntime.stream-server");

        // The ready line, the only thing written to the daemon's pipe: both sockets listen now.
        WriteReady(ready, Hello(listener, sessions));
        LogServing(log, Environment.ProcessId, listener.BaseUrl, socketPath);

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
        var handler = new ControlHandler(server, sessions, listener, () => { Release(); LogDraining(log, sessions.OpenSessions); }, log);
        var serving = ServeControlAsync(control, handler, stopControl.Token);
        _ = Task.Delay(FirstDaemonTimeout, stopControl.Token).ContinueWith(_ => sessions.NoDaemonCame(), TaskScheduler.Default);

        await sessions.Done;
        LogExiting(log, sessions.Daemons, sessions.OpenSessions, sessions.Draining);
        Release();
        await stopControl.CancelAsync();
        await app.StopAsync();
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
    private sealed class ControlHandler(StreamingServer server, StreamSessions sessions, StreamingListener listener, Action drain, ILogger log)
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
                    try
                    {
                        answer = Handle(StreamControlCodec.DecodeRequest(line), ref daemon);
                    }
                    catch (System.Text.Json.JsonException e)
                    {
                        answer = new StreamControlResponse { Error = $"bad control request: {e.Message}" };
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
