using CriRuntime.Interop;

namespace CriRuntime.Containers;

/// <summary>Tells when processes exit, for any number of them, from one thread: each is a pidfd
/// (readable once its process has exited, zombie or reaped, and not across an execve, which
/// keeps the process), all polled together with a wake pipe for additions and the stop. The exit
/// monitor watches every running container's shim this way: a pidfd is one descriptor and a few
/// bytes here, where a parked `wait` request on each shim's control socket was a socket, its
/// stream, reader buffers and a pending task (about 11 KiB of the daemon per container,
/// docs/benchmarks.md).</summary>
public sealed unsafe class ProcessExitWatcher : IDisposable
{
    private readonly object _lock = new();
    private readonly List<(FdHandle Pidfd, Action Exited)> _watched = [];
    private readonly FdHandle _wakeRead, _wakeWrite;
    private readonly Thread _thread;
    private bool _stopping;

    public ProcessExitWatcher()
    {
        int* fds = stackalloc int[2];
        if (Libc.Pipe2(fds, Libc.O_CLOEXEC | Libc.O_NONBLOCK) != 0) throw Errno.Exception("pipe2", "exit watcher", Errno.Current);
        (_wakeRead, _wakeWrite) = (new FdHandle(fds[0]), new FdHandle(fds[1]));
        _thread = new Thread(Run) { IsBackground = true, Name = "process exits" };
        _thread.Start();
    }

    /// <summary>How many processes are watched.</summary>
    public int Count
    {
        get { lock (_lock) return _watched.Count; }
    }

    /// <summary>Calls <paramref name="exited"/> (on the thread pool) once the process of
    /// <paramref name="pidfd"/> has exited, at once if it has; takes the pidfd and closes it then.</summary>
    public void Watch(FdHandle pidfd, Action exited)
    {
        lock (_lock)
        {
            if (_stopping)
            {
                pidfd.Dispose();
                return;
            }
            _watched.Add((pidfd, exited));
        }
        Wake();
    }

    private void Wake()
    {
        byte one = 1;
        _ = Libc.Write(_wakeWrite.Fd, &one, 1); // a full pipe is already a wake-up
    }

    private void Run()
    {
        var polled = new List<(FdHandle Pidfd, Action Exited)>();
        while (true)
        {
            lock (_lock)
            {
                if (_stopping) return;
                polled.Clear();
                polled.AddRange(_watched);
            }
            var fds = new Libc.PollFd[polled.Count + 1];
            fds[0] = new Libc.PollFd { Fd = _wakeRead.Fd, Events = Libc.POLLIN };
            for (var i = 0; i < polled.Count; i++) fds[i + 1] = new Libc.PollFd { Fd = polled[i].Pidfd.Fd, Events = Libc.POLLIN };
            int n;
            fixed (Libc.PollFd* p = fds) n = Libc.Poll(p, (nuint)fds.Length, -1);
            if (n < 0) continue; // EINTR
            if (fds[0].Revents != 0)
            {
                byte* drain = stackalloc byte[64];
                while (Libc.Read(_wakeRead.Fd, drain, 64) > 0) { }
            }
            for (var i = 0; i < polled.Count; i++)
            {
                if (fds[i + 1].Revents == 0) continue;
                var (pidfd, exited) = polled[i];
                lock (_lock) _watched.Remove(polled[i]);
                pidfd.Dispose();
                ThreadPool.QueueUserWorkItem(_ => exited());
            }
        }
    }

    /// <summary>Stops watching; the callbacks not called yet never are.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_stopping) return;
            _stopping = true;
        }
        Wake();
        _thread.Join();
        lock (_lock)
        {
            foreach (var (pidfd, _) in _watched) pidfd.Dispose();
            _watched.Clear();
        }
        _wakeRead.Dispose();
        _wakeWrite.Dispose();
    }
}
