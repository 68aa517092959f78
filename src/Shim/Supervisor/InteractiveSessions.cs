using System.Text.Json;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Interactive exec and attach (docs/shim-protocol.md, "Streams"). The shim owns the
/// processes and their terminals; the daemon gets connected unix sockets (SCM_RIGHTS on the
/// control connection) and relays them to the streaming client with its own event loop.
/// Non-terminal stdio are those sockets themselves (no copy in the shim); a terminal's master
/// stays here and is relayed by two threads for the length of the session.</summary>
public sealed partial class ContainerSupervisor
{
    /// <summary>The container's own terminal master (process.terminal), for the log pump, attach and resize.</summary>
    private FdHandle? _tty;
    /// <summary>The shim's end of the container's stdin socket (CRI stdin: true); attach hands it on.</summary>
    private FdHandle? _stdin;
    private readonly Attachers _attachers = new();
    /// <summary>Terminal masters of running interactive execs, by host pid (for resize).</summary>
    private Dictionary<int, FdHandle>? _execTtys;

    /// <summary>Serves a connection that asked for exec-stream or attach: writes the answer (with
    /// descriptors) itself, and for exec-stream a second answer once the process has exited.</summary>
    private void Stream(ShimRequest r, FdHandle conn)
    {
        try
        {
            if (r.Op == ShimOps.Attach) Attach(r, conn);
            else ExecStream(r, conn);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or InvalidDataException or ArgumentException or NotSupportedException)
        {
            _log.Error($"{r.Op}: {e.Message}");
            TryAnswer(conn, new ShimResponse { Ok = false, Error = e.Message, State = Snapshot() }, []);
        }
    }

    private static bool TryAnswer(FdHandle conn, ShimResponse response, IReadOnlyList<FdHandle> fds)
    {
        var line = JsonSerializer.SerializeToUtf8Bytes(response, ShimJsonContext.Default.ShimResponse);
        var bytes = new byte[line.Length + 1];
        line.CopyTo(bytes, 0);
        bytes[^1] = (byte)'\n';
        Span<int> numbers = stackalloc int[fds.Count];
        for (var i = 0; i < fds.Count; i++) numbers[i] = fds[i].Fd;
        try { FdPassing.Send(conn.Fd, bytes, numbers); return true; }
        catch (IOException) { return false; } // the daemon went away
    }

    private void ExecStream(ShimRequest r, FdHandle conn)
    {
        if (r.Args is not { Count: > 0 }) throw new ArgumentException("exec-stream: args is empty");
        if (Snapshot().Status != ShimStatus.Running) throw new InvalidOperationException($"container {_id} is not running");
        var tty = r.Tty == true;
        var spec = _spec!;
        var process = spec.Process! with { Args = r.Args, Env = r.Env ?? spec.Process!.Env, Cwd = r.Cwd ?? spec.Process!.Cwd, Terminal = tty };

        var (syncParent, syncChild) = Spawn.SocketPair();
        using var sync = new SyncChannel(syncParent);
        var fds = new Dictionary<int, int> { [0] = -1, [1] = -1, [2] = -1, [ContainerInit.SyncFd] = syncChild.Fd };
        var theirs = new List<FdHandle>(); // the daemon's ends, passed with the answer
        var names = new List<string>();
        var childEnds = new List<FdHandle> { syncChild };
        if (!tty)
        {
            void Socket(int childFd, string name)
            {
                var (ours, child) = Spawn.SocketPair();
                fds[childFd] = child.Fd;
                childEnds.Add(child);
                theirs.Add(ours);
                names.Add(name);
            }
            if (r.Stdin == true) Socket(0, "stdin");
            Socket(1, "stdout");
            Socket(2, "stderr");
        }
        FdHandle? master = null;
        try
        {
            var exited = new ManualResetEventSlim();
            var status = 0;
            int pid;
            try
            {
                pid = _spawner.SpawnJoined(spec, Environment.ProcessPath ?? "/proc/self/exe",
                    ["criruntime-shim", "exec-init", "--pid", _state.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)], fds);
            }
            finally { foreach (var c in childEnds) c.Dispose(); }
            _spawner.OnExit(pid, s => { status = s; exited.Set(); });
            _cgroup?.AddProcess(pid);

            sync.Send(JsonSerializer.Serialize(spec with { Process = process }, OciJsonContext.Default.Spec));
            var answer = sync.Receive();
            if (answer == Terminal.PtyMessage)
            {
                master = sync.TakeFd() ?? throw new InvalidDataException("exec-init sent \"pty\" without the terminal");
                answer = sync.Receive();
            }
            if (answer is not null) // the process never ran
            {
                exited.Wait();
                TryAnswer(conn, new ShimResponse { Ok = false, Error = answer.StartsWith("error ", StringComparison.Ordinal) ? answer[6..] : answer, State = Snapshot() }, []);
                return;
            }

            Thread? output = null;
            if (master is not null)
            {
                var (ours, relay) = Spawn.SocketPair();
                theirs.Add(ours);
                names.Add("tty");
                if (r.Width is { } w && r.Height is { } h) TtyRelay.Resize(master, w, h);
                output = TtyRelay.Output(master, relay);
                TtyRelay.Input(relay, master, eofOnClose: true);
                relay.Dispose(); // the relay threads hold their references
                lock (_lock) (_execTtys ??= [])[pid] = master;
            }
            TryAnswer(conn, new ShimResponse { Ok = true, Pid = pid, Fds = names, State = Snapshot() }, theirs);
            foreach (var t in theirs) t.Dispose();
            theirs.Clear();

            exited.Wait();
            if (master is not null)
            {
                lock (_lock) _execTtys!.Remove(pid);
                // What the process wrote last is still in the terminal: let the relay deliver it
                // before the exit status (a background child holding the terminal is not waited for).
                output!.Join(TimeSpan.FromSeconds(2));
            }
            var (code, signal) = ContainerSpawner.Decode(status);
            TryAnswer(conn, new ShimResponse { Ok = true, Pid = pid, State = Snapshot(), Exec = new ExecResult { ExitCode = code, Signal = signal } }, []);
        }
        finally
        {
            foreach (var t in theirs) t.Dispose();
            master?.Dispose();
        }
    }

    /// <summary>Attach: sockets that get a copy of the container's live output from now on, and
    /// its stdin (the container's own stdin socket, or a relay into its terminal).</summary>
    private void Attach(ShimRequest r, FdHandle conn)
    {
        if (Snapshot().Status != ShimStatus.Running) throw new InvalidOperationException($"container {_id} is not running");
        var theirs = new List<FdHandle>();
        var names = new List<string>();
        try
        {
            if (_tty is { } master)
            {
                var (ours, relay) = Spawn.SocketPair();
                theirs.Add(ours);
                names.Add("tty");
                if (r.Stdin == true && _spec!.Process!.Terminal) TtyRelay.Input(relay, master, eofOnClose: false);
                if (!_attachers.Add("stdout", relay)) relay.Dispose();
            }
            else
            {
                if (r.Stdin == true && _stdin is not null)
                {
                    // The container's stdin socket itself: sendmsg gives the daemon its own
                    // descriptor of it, so the daemon's shutdown(SHUT_WR) is end of file for the
                    // container (stdin_once), while a plain close leaves stdin open for the next attach.
                    theirs.Add(new FdHandle(DupCloexec(_stdin)));
                    names.Add("stdin");
                }
                foreach (var stream in (string[])["stdout", "stderr"])
                {
                    var (ours, mine) = Spawn.SocketPair();
                    theirs.Add(ours);
                    names.Add(stream);
                    if (!_attachers.Add(stream, mine)) mine.Dispose();
                }
            }
            TryAnswer(conn, new ShimResponse { Ok = true, Fds = names, State = Snapshot() }, theirs);
        }
        finally
        {
            foreach (var t in theirs) t.Dispose();
        }
    }

    private static int DupCloexec(FdHandle fd)
    {
        const int F_DUPFD_CLOEXEC = 1030;
        var dup = Libc.Fcntl(fd.Fd, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) throw KernelException.Last("fcntl(F_DUPFD_CLOEXEC)", "container stdin");
        return dup;
    }

    private ShimResponse Resize(ShimRequest r)
    {
        if (r.Width is not { } w || r.Height is not { } h) return new ShimResponse { Ok = false, Error = "resize: width and height are required", State = Snapshot() };
        FdHandle? master;
        lock (_lock) master = r.Pid is { } pid ? _execTtys?.GetValueOrDefault(pid) : _tty;
        if (master is null)
            return new ShimResponse { Ok = false, Error = r.Pid is { } p ? $"resize: no terminal session with pid {p}" : $"resize: container {_id} has no terminal", State = Snapshot() };
        try { TtyRelay.Resize(master, w, h); }
        catch (ObjectDisposedException) { return new ShimResponse { Ok = false, Error = "resize: the terminal session has ended", State = Snapshot() }; }
        return Ok();
    }
}
