using System.Runtime.InteropServices;
using System.Text.Json;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The shim's control socket (docs/shim-protocol.md): newline-delimited JSON requests,
/// one JSON line answered per request. Raw sockets and poll(2) on a dedicated thread: an idle
/// shim then has no epoll engine and no thread pool, only a thread parked in poll(2).</summary>
public sealed unsafe partial class ControlServer : IDisposable
{
    private readonly string _path;
    private readonly Func<ShimRequest, ShimResponse> _handle;
    private readonly ShimLog _log;
    private readonly FdHandle _listen;
    // A plain object, not System.Threading.Lock: Close waits on it with Monitor.Wait.
    private readonly object _lock = new();
    private int _inflight;
    /// <summary>Threads that own a connection (blocking requests, streams): the connection is
    /// theirs until they close it, so the shim cannot be handed to the monitor meanwhile.</summary>
    private int _connThreads;
    /// <summary>Wakes the loop from another thread (a connection thread ended: maybe idle now).</summary>
    private readonly FdHandle _wakeRead, _wakeWrite;
    private volatile bool _closing;
    /// <summary>`wait`s without a timeout, parked until <see cref="Close"/> answers them: an idle
    /// shim always has the daemon's, and a thread per wait would keep its stack and the thread
    /// start-up code resident for the container's whole life.</summary>
    private readonly List<(Connection Conn, ShimRequest Request)> _waiters = [];

    private const int SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;

    private readonly Action? _idle;
    private readonly Action<ShimRequest, FdHandle>? _stream;
    private readonly Func<Handover, bool>? _handover;
    /// <summary>Whether the shim would go to the monitor now (cheap: asked at every idle point).</summary>
    private readonly Func<bool> _canHandOver;
    private IReadOnlyList<(FdHandle Fd, byte[] Pending)>? _resumedConns;
    /// <summary>Set when the shim went idle: the loop offers itself to the monitor at its next turn.</summary>
    private volatile bool _wantHandover;

    /// <summary>What the monitor takes over: the listening socket, the connections open (with
    /// the bytes read from them and not yet answered) and the parked untimed waits.</summary>
    public sealed record Handover(FdHandle Listen, IReadOnlyList<(FdHandle Fd, byte[] Pending)> Conns, IReadOnlyList<FdHandle> Waiters);

    /// <summary>What the monitor handed back: its socket, its connections, its parked requests
    /// (untimed waits parked again; timed waits and stops served on their own threads).</summary>
    public sealed record Resumed(FdHandle Listen, IReadOnlyList<(FdHandle Fd, byte[] Pending)> Conns, IReadOnlyList<(FdHandle Fd, ShimRequest Request)> Waiters);

    /// <param name="idle">Run before answering a quick request, and after parking a wait, when no
    /// other request is being served (the memory trim).</param>
    /// <param name="stream">Serves exec-stream and attach on a thread of their own: it writes its
    /// answers (with descriptors) to the connection itself, which is closed when it returns.</param>
    public ControlServer(string path, Func<ShimRequest, ShimResponse> handle, ShimLog log, Action? idle = null,
        Action<ShimRequest, FdHandle>? stream = null, Func<Handover, bool>? handover = null, Func<bool>? canHandOver = null, Resumed? resumed = null)
    {
        _idle = idle;
        _stream = stream;
        _handover = handover;
        _canHandOver = canHandOver ?? (() => handover is not null);
        (_wakeRead, _wakeWrite) = Spawn.Pipe();
        _path = path;
        _handle = handle;
        _log = log;
        if (resumed is not null)
        {
            // The monitor's socket, connections and parked requests, as it left them.
            _listen = resumed.Listen;
            _resumedConns = resumed.Conns;
            foreach (var (waiter, request) in resumed.Waiters)
            {
                if (request is { Op: ShimOps.Wait, Timeout: null }) { _waiters.Add((new Connection(waiter), request)); continue; }
                _inflight++;
                _connThreads++;
                var conn = new Connection(waiter);
                new Thread(() => ServeBlocking(conn, request), 256 * 1024) { IsBackground = true, Name = "control-" + request.Op }.Start();
            }
            new Thread(Loop, 256 * 1024) { IsBackground = true, Name = "control" }.Start();
            return;
        }
        var addr = UnixSocketAddress.For(path);
        File.Delete(path); // a stale socket of a previous shim of this container
        var fd = Libc.Socket(UnixSocketAddress.AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw KernelException.Last("socket", path);
        _listen = new FdHandle(fd);
        if (Libc.Bind(fd, (byte*)&addr, addr.Length) != 0) throw KernelException.Last("bind", path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (Libc.Listen(fd, 256) != 0) throw KernelException.Last("listen", path);
        new Thread(Loop, 256 * 1024) { IsBackground = true, Name = "control" }.Start();
    }

    private const short POLLIN = 1, POLLERR = 8, POLLHUP = 16;

    private sealed class Connection(FdHandle fd)
    {
        public FdHandle Fd { get; } = fd;
        public List<byte> Pending { get; } = [];
    }

    /// <summary>One thread polls the listening socket and every idle connection and answers quick
    /// requests inline. Requests that block (wait, stop, exec) take their connection to a thread
    /// of their own. Creating and ending threads touches a lot of runtime code, which would stay
    /// resident in every shim: the common case runs on this one thread.</summary>
    private void Loop()
    {
        var conns = new List<Connection>();
        var buffer = new byte[4096];
        var fds = new Libc.PollFd[8]; // grown as connections come; a stackalloc here would grow the stack every turn
        if (_resumedConns is { } resumed)
        {
            _resumedConns = null;
            foreach (var (fd, pending) in resumed)
            {
                var conn = new Connection(fd);
                conn.Pending.AddRange(pending);
                switch (ServeLines(conn))
                {
                    case Outcome.Waiting or Outcome.Answered: conns.Add(conn); break;
                    case Outcome.Closed: conn.Fd.Dispose(); break;
                    default: break; // handed off or parked
                }
            }
        }
        while (!_closing)
        {
            if (_wantHandover)
            {
                _wantHandover = false;
                TryHandover(conns);
                IdleIfQuiet(handover: false); // still here: the shim stays .NET for now
            }
            if (fds.Length < conns.Count + 2) fds = new Libc.PollFd[(conns.Count + 2) * 2];
            fds[0] = new Libc.PollFd { Fd = _listen.Fd, Events = POLLIN };
            fds[1] = new Libc.PollFd { Fd = _wakeRead.Fd, Events = POLLIN };
            for (var i = 0; i < conns.Count; i++) fds[i + 2] = new Libc.PollFd { Fd = conns[i].Fd.Fd, Events = POLLIN };
            int ready;
            fixed (Libc.PollFd* p = fds) ready = Libc.Poll(p, (nuint)(conns.Count + 2), -1);
            if (ready < 0)
            {
                if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                _log.Error($"poll {_path}: errno {Marshal.GetLastPInvokeError()}");
                return;
            }
            if (_closing) break;
            if ((fds[1].Revents & POLLIN) != 0)
            {
                try { Libc.ReadSome(_wakeRead.Fd, buffer, "control wake pipe"); } catch (KernelException) { }
            }
            var parked = false;
            for (var i = conns.Count - 1; i >= 0; i--)
            {
                if ((fds[i + 2].Revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
                var conn = conns[i];
                int n;
                try { n = Libc.ReadSome(conn.Fd.Fd, buffer, _path); }
                catch (KernelException) { n = 0; }
                if (n == 0) { conns.RemoveAt(i); conn.Fd.Dispose(); continue; }
                conn.Pending.AddRange(buffer.AsSpan(0, n));
                if (conn.Pending.Count > 64 * 1024) { conns.RemoveAt(i); conn.Fd.Dispose(); continue; } // not a client of ours
                switch (ServeLines(conn))
                {
                    case Outcome.Answered: break;
                    case Outcome.Closed: conns.RemoveAt(i); conn.Fd.Dispose(); break;
                    case Outcome.HandedOff: conns.RemoveAt(i); break;
                    case Outcome.Parked: conns.RemoveAt(i); parked = true; break;
                }
            }
            if ((fds[0].Revents & POLLIN) != 0)
            {
                var fd = Libc.Accept4(_listen.Fd, null, null, SOCK_CLOEXEC);
                if (fd >= 0) conns.Add(new Connection(new FdHandle(fd)));
            }
            if (parked) IdleIfQuiet(); // the wait will not be answered until the exit: the shim is idle now
        }
        foreach (var c in conns) c.Fd.Dispose();
    }

    private enum Outcome { Waiting, Answered, Closed, HandedOff, Parked }

    /// <summary>Answers every complete line of a connection; hands the connection to a thread at
    /// the first request that may block.</summary>
    private Outcome ServeLines(Connection conn)
    {
        var outcome = Outcome.Waiting;
        int nl;
        while ((nl = conn.Pending.IndexOf((byte)'\n')) >= 0)
        {
            var line = conn.Pending.GetRange(0, nl).ToArray();
            conn.Pending.RemoveRange(0, nl + 1);
            var (request, error) = Parse(line);
            if (request?.Op is ShimOps.ExecStream or ShimOps.Attach && _stream is not null)
            {
                lock (_lock) { _inflight++; _connThreads++; }
                new Thread(() =>
                {
                    using (conn.Fd)
                    {
                        try { _stream(request, conn.Fd); }
                        finally { lock (_lock) { _inflight--; Monitor.PulseAll(_lock); } }
                    }
                    ConnectionThreadDone();
                }, 256 * 1024) { IsBackground = true, Name = "control-" + request.Op }.Start();
                return Outcome.HandedOff;
            }
            if (request is { Op: ShimOps.Wait, Timeout: null })
            {
                lock (_lock)
                {
                    if (!_closing)
                    {
                        _waiters.Add((conn, request));
                        return Outcome.Parked;
                    }
                }
                // Closing: the container has exited, so the wait is answered at once, inline.
            }
            if (request?.Op is ShimOps.Wait or ShimOps.Stop or ShimOps.Exec)
            {
                lock (_lock) { _inflight++; _connThreads++; }
                new Thread(() => ServeBlocking(conn, request), 256 * 1024) { IsBackground = true, Name = "control-" + request.Op }.Start();
                return Outcome.HandedOff;
            }
            var answer = Respond(request, error);
            // Trimmed before answering, so a client that has its answer finds the shim idle;
            // except after start, whose latency counts (the daemon's wait follows, and trims).
            var last = conn.Pending.IndexOf((byte)'\n') < 0;
            var startOp = request?.Op == ShimOps.Start;
            if (last && !startOp) IdleIfQuiet();
            if (!Send(conn.Fd, answer)) return Outcome.Closed;
            if (last && startOp) IdleIfQuiet();
            outcome = Outcome.Answered;
        }
        return outcome;
    }

    /// <summary>Serves one blocking request, then the rest of that connection, on this thread.</summary>
    private void ServeBlocking(Connection conn, ShimRequest first)
    {
        try { ServeBlockingConnection(conn, first); }
        finally { ConnectionThreadDone(); }
    }

    /// <summary>A thread that owned a connection has closed it: once none is left, the shim is
    /// idle and may go to the monitor (the loop is woken to offer it).</summary>
    private void ConnectionThreadDone()
    {
        lock (_lock)
        {
            if (--_connThreads > 0 || _inflight > 0 || _closing || _handover is null) return;
        }
        if (!_canHandOver()) return;
        _wantHandover = true;
        try { Libc.WriteAll(_wakeWrite.Fd, "w"u8, "control wake pipe"); } catch (KernelException) { }
    }

    private void ServeBlockingConnection(Connection conn, ShimRequest first)
    {
        using (conn.Fd)
        {
            try
            {
                if (!Answer(conn.Fd, first, null)) return;
            }
            finally
            {
                lock (_lock) { _inflight--; Monitor.PulseAll(_lock); }
            }
            var buffer = new byte[4096];
            while (true)
            {
                int nl;
                while ((nl = conn.Pending.IndexOf((byte)'\n')) >= 0)
                {
                    var line = conn.Pending.GetRange(0, nl).ToArray();
                    conn.Pending.RemoveRange(0, nl + 1);
                    var (request, error) = Parse(line);
                    lock (_lock) _inflight++;
                    try { if (!Answer(conn.Fd, request, error)) return; }
                    finally { lock (_lock) { _inflight--; Monitor.PulseAll(_lock); } }
                }
                int n;
                try { n = Libc.ReadSome(conn.Fd.Fd, buffer, _path); }
                catch (KernelException) { return; }
                if (n == 0) return;
                conn.Pending.AddRange(buffer.AsSpan(0, n));
                if (conn.Pending.Count > 64 * 1024) return;
            }
        }
    }

    private static (ShimRequest? Request, string? Error) Parse(byte[] line)
    {
        try
        {
            return (ShimRequestReader.TryRead(line) ?? JsonSerializer.Deserialize(line, ShimJson.Transient().ShimRequest) ?? throw new JsonException("empty request"), null);
        }
        catch (JsonException e) { return (null, e.Message); }
    }

    /// <summary>The shim is idle: it goes to the monitor at the loop's next turn if it can
    /// (trimming first would only be undone by the exec), else it trims.</summary>
    private void IdleIfQuiet(bool handover = true)
    {
        bool quiet;
        lock (_lock) quiet = _inflight == 0;
        if (!quiet || _closing) return;
        if (handover && _handover is not null && _canHandOver()) _wantHandover = true;
        else _idle?.Invoke();
    }

    /// <summary>Offers the idle shim to the monitor (on the loop's thread, so the connections
    /// stand still): only with no request in flight and none read but unanswered. Returns only
    /// if the shim stays (the monitor is off, not eligible, or the exec failed).</summary>
    private void TryHandover(List<Connection> conns)
    {
        Handover handover;
        lock (_lock)
        {
            if (_inflight > 0 || _connThreads > 0 || _closing) return;
            if (conns.Any(c => c.Pending.Contains((byte)'\n'))) return;
            handover = new Handover(_listen, [.. conns.Select(c => (c.Fd, c.Pending.ToArray()))], [.. _waiters.Select(w => w.Conn.Fd)]);
        }
        _handover!(handover);
    }

    private bool Answer(FdHandle conn, ShimRequest? request, string? parseError) => Send(conn, Respond(request, parseError));

    private byte[] Respond(ShimRequest? request, string? parseError)
    {
        ShimResponse response;
        try
        {
            response = request is null ? new ShimResponse { Ok = false, Error = parseError } : _handle(request);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or InvalidOperationException or ArgumentException or NotSupportedException)
        {
            response = new ShimResponse { Ok = false, Error = e.Message };
        }
        return JsonSerializer.SerializeToUtf8Bytes(response, ShimJson.Transient().ShimResponse);
    }

    private bool Send(FdHandle conn, byte[] bytes)
    {
        try
        {
            Libc.WriteAll(conn.Fd, bytes, _path);
            Libc.WriteAll(conn.Fd, "\n"u8, _path);
            return true;
        }
        catch (KernelException) { return false; } // the client went away
    }

    /// <summary>Stops accepting, removes the socket (clients then read state.json) and waits up to
    /// <paramref name="grace"/> for requests being answered (e.g. "wait" callers learning of the exit).</summary>
    public void Close(TimeSpan grace)
    {
        (Connection Conn, ShimRequest Request)[] waiters;
        lock (_lock)
        {
            _closing = true;
            waiters = [.. _waiters];
            _waiters.Clear();
        }
        try { File.Delete(_path); } catch (IOException) { }
        Libc.Shutdown(_listen.Fd, 2); // wakes the poll(2)
        foreach (var (conn, request) in waiters)
            using (conn.Fd) Answer(conn.Fd, request, null);
        var deadline = DateTime.UtcNow + grace;
        lock (_lock)
        {
            while (_inflight > 0)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_lock, left)) break;
            }
        }
    }

    public void Dispose() => _listen.Dispose();
}
