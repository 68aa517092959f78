using System.Runtime.InteropServices;
using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Starts the container init in its namespaces and reaps it.
///
/// Namespaces are entered on a dedicated thread: unshare(CLONE_FS) first so chdir/umask of
/// that thread stop being shared, then setns for every namespace the spec gives by path (the
/// pod's pinned netns/ipcns/utsns) and one unshare for the rest; a child spawned from that
/// thread starts inside them (pid 1 of a new pid namespace). The cgroup namespace is left to
/// the init, which must first be moved into its cgroup.
///
/// That thread can no longer create threads (the kernel refuses CLONE_THREAD once
/// pid_ns_for_children differs), so it never touches the thread pool: it only spawns, then
/// loops in waitpid and signals a <see cref="ManualResetEventSlim"/>. It stays alive as long as
/// the container, because the init's PR_SET_PDEATHSIG fires when the *thread* that spawned it
/// exits: the container dies with the shim, not before. As a subreaper the shim also reaps any
/// orphan reparented to it.</summary>
public sealed class ContainerSpawner
{
    private readonly ManualResetEventSlim _spawned = new();
    private readonly ManualResetEventSlim _exited = new();
    private Exception? _error;
    // Exits of other children (exec'd processes), by pid; a child can exit before its caller
    // has registered, so unclaimed statuses are kept until asked for.
    private readonly Lock _children = new();
    private readonly Dictionary<int, Action<int>> _onExit = [];
    private readonly Dictionary<int, int> _unclaimed = [];

    public int Pid { get; private set; }
    /// <summary>The restored init's pidfd, opened before anything could reap it (<see cref="StartRestore"/>).</summary>
    public FdHandle? RestoredPidFd { get; private set; }
    /// <summary>waitpid status of the init once <see cref="Exited"/> is set.</summary>
    public int RawStatus { get; private set; }
    public WaitHandle ExitedHandle => _exited.WaitHandle;
    public bool HasExited => _exited.IsSet;

    /// <param name="rootfs">The container's rootfs: the working directory of an init that starts in a
    /// user namespace (it may not be able to reach it by path: see UserNamespaces).</param>
    public int Start(Spec spec, string exe, IReadOnlyList<string> argv, IReadOnlyDictionary<int, int> fds, string? rootfs = null)
    {
        var env = Spawn.CurrentEnvironment();
        var thread = new Thread(() => Run(spec, exe, argv, env, fds, rootfs), maxStackSize: 256 * 1024)
        {
            IsBackground = true,
            Name = "container-init",
        };
        thread.Start();
        _spawned.Wait();
        if (_error is not null) throw _error;
        return Pid;
    }

    /// <summary>Run on the reaper thread after each child it reaps: the supervisor hands the
    /// process over to the monitor from there (the reaper is the init's parent thread, which the
    /// exec must be done by: PR_SET_PDEATHSIG fires when that thread goes).</summary>
    public Action? Reaped { get; set; }

    /// <summary>The namespaces the spawning thread had before it entered the container's (open
    /// descriptors, by type), so that it can go back before it execs the monitor.</summary>
    private List<(FdHandle Fd, int Flag)>? _hostNamespaces;

    /// <summary>An init the monitor handed back (the supervisor resumed in its process): its
    /// parent is this process's main thread; reaped from a thread of its own, which only reaps
    /// while the main thread lets it (<see cref="HoldReaping"/>).</summary>
    public void Adopt(int pid)
    {
        Pid = pid;
        _spawned.Set();
        new Thread(ReapUnlessHeld, 256 * 1024) { IsBackground = true, Name = "reaper" }.Start();
    }

    private readonly object _reapGate = new(); // Monitor.Wait needs a monitor, not a Lock
    private bool _reapingHeld;

    /// <summary>Resumed: the main thread is about to replace the process image (exec the monitor).
    /// From now on no child is reaped here: a status reaped now would die with this image, and the
    /// monitor would find the init's pidfd saying "exited" with nothing left to reap (the resumed
    /// shim then waited for an exit that had already been taken). An exit that comes now stays a
    /// zombie, which outlives the exec, for whoever comes next. Once this returns,
    /// <see cref="HasExited"/> no longer changes until <see cref="ReleaseReaping"/>.</summary>
    public void HoldReaping()
    {
        lock (_reapGate) _reapingHeld = true;
    }

    /// <summary>The exec did not happen: reaping goes on.</summary>
    public void ReleaseReaping()
    {
        lock (_reapGate)
        {
            _reapingHeld = false;
            Monitor.PulseAll(_reapGate);
        }
    }

    /// <summary><see cref="Reap"/> for a resumed shim, whose init's parent (the main thread) is
    /// not this thread: learns which child exited without reaping it, then reaps it only while
    /// reaping is not held.</summary>
    private unsafe void ReapUnlessHeld()
    {
        while (true)
        {
            var exited = Libc.WaitAnyExitedKeep();
            if (exited < 0)
            {
                if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                return; // ECHILD: nothing left to wait for
            }
            int status;
            int got;
            lock (_reapGate)
            {
                while (_reapingHeld) Monitor.Wait(_reapGate);
                do got = Libc.Waitpid(exited, &status, 0);
                while (got < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
                if (got == Pid)
                {
                    RawStatus = status;
                    _exited.Set();
                    continue;
                }
            }
            if (got < 0) continue; // reaped meanwhile by someone else (ReapMissedExit)
            HandOn(got, status);
        }
    }

    /// <summary>Puts the calling (spawning) thread back into the namespaces it started in.</summary>
    public void LeaveContainerNamespaces()
    {
        if (_hostNamespaces is null) return;
        // mount last: it resets the thread's root and working directory to the host's
        foreach (var (fd, flag) in _hostNamespaces.OrderBy(n => n.Flag == L.CLONE_NEWNS ? 1 : 0))
            if (Libc.Setns(fd.Fd, flag) != 0) throw KernelException.Last("setns", $"host namespace {flag:x}");
    }

    private void SaveHostNamespaces()
    {
        _hostNamespaces = [];
        foreach (var (name, type) in (ReadOnlySpan<(string, string)>)[("mnt", "mount"), ("net", "network"), ("ipc", "ipc"), ("uts", "uts"), ("pid", "pid"), ("cgroup", "cgroup")])
        {
            try { _hostNamespaces.Add((FdHandle.Open($"/proc/thread-self/ns/{name}", Libc.O_RDONLY), L.NamespaceFlag(type))); }
            catch (KernelException) { } // a kernel without it: that namespace is never entered either
        }
    }

    public bool WaitExit(TimeSpan timeout) => _exited.Wait(timeout);

    public void WaitExit() => _exited.Wait();

    /// <summary>The init has exited (its pidfd says so) and the reaper has not reported it: reaps
    /// it here. False when its status is lost (it was reaped, and not by <see cref="ReapUnlessHeld"/>): the
    /// exit is then recorded as a shim that lost its container (exit code 255).</summary>
    public unsafe bool ReapMissedExit()
    {
        const int WNOHANG = 1;
        int status;
        int got;
        lock (_reapGate)
        {
            do got = Libc.Waitpid(Pid, &status, WNOHANG);
            while (got < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
            if (_exited.IsSet) return true; // the reaper got there after all
            var found = got == Pid;
            RawStatus = found ? status : 255 << 8;
            _exited.Set();
            return found;
        }
    }

    private void Run(Spec spec, string exe, IReadOnlyList<string> argv, IReadOnlyList<string> env, IReadOnlyDictionary<int, int> fds, string? rootfs)
    {
        var k = LinuxKernel.Instance;
        try
        {
            k.Unshare(L.CLONE_FS);
            SaveHostNamespaces();
            var flags = 0;
            LinuxNamespace? user = null;
            // Namespaces given by path are joined here, before any user namespace (as host root we
            // may join them all); those made new are made by whoever ends up owning them.
            foreach (var ns in spec.Linux?.Namespaces ?? [])
            {
                if (ns.Type == "user") { user = ns; continue; }
                var flag = L.NamespaceFlag(ns.Type);
                if (!string.IsNullOrEmpty(ns.Path)) k.SetNs(ns.Path, flag);
                else if (ns.Type != "cgroup") flags |= flag;
            }
            if (user is null)
            {
                if (flags != 0) k.Unshare(flags);
                Pid = Spawn.Run(exe, argv, env, fds, newSession: true);
            }
            else
            {
                if (rootfs is not null) k.Chdir(rootfs);
                Pid = NsExec.Start(spec, user, flags, exe, argv, env, fds);
            }
        }
        catch (Exception e)
        {
            _error = e;
            _spawned.Set();
            return;
        }
        _spawned.Set();
        Reap();
    }

    /// <summary>For a container restored from a checkpoint: runs CRIU (`criu restore
    /// --restore-detached --restore-sibling`) in the shim's own namespaces from a dedicated reaper
    /// thread and waits for it. CRIU makes the restored init the shim's child and writes its pid to
    /// <paramref name="pidFile"/>; from then on that init is reaped like one this class started.
    /// Returns null on success, else how CRIU ended (the container has exited then, with CRIU's
    /// status).</summary>
    public string? StartRestore(string exe, IReadOnlyList<string> argv, IReadOnlyList<string> env, IReadOnlyDictionary<int, int> fds, string pidFile, int nice = 0)
    {
        string? failure = null;
        var thread = new Thread(() =>
        {
            int criu;
            try { criu = Spawn.Run(exe, argv, env, fds, newSession: true); }
            catch (Exception e)
            {
                _error = e;
                _spawned.Set();
                return;
            }
            // Best effort (needs CAP_SYS_NICE); what CRIU forks inherits it until CRIU sets each
            // restored task's own values from the image.
            if (nice != 0) _ = Libc.Setpriority(Libc.PRIO_PROCESS, (uint)criu, nice);
            var status = WaitFor(criu);
            if (status != 0)
            {
                failure = Decode(status) switch { (_, { } sig) => $"killed by signal {sig}", var (code, _) => $"exit code {code}" };
                RawStatus = status;
                _exited.Set();
                _spawned.Set();
                return;
            }
            try { Pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture); }
            catch (Exception e) when (e is IOException or FormatException or OverflowException)
            {
                failure = $"no restored pid in {pidFile}: {e.Message}";
                RawStatus = 1 << 8;
                _exited.Set();
                _spawned.Set();
                return;
            }
            // The restored init may have ended before CRIU did.
            lock (_children)
            {
                if (_unclaimed.Remove(Pid, out var ended))
                {
                    RawStatus = ended;
                    _exited.Set();
                }
            }
            // Its pidfd, before Reap may reap it: a restored process that ends at once (its
            // connections restored closed, say) is a container that started and exited, not a
            // start that failed because the pid was gone by the time the caller asked.
            if (!_exited.IsSet)
            {
                try { RestoredPidFd = Spawn.PidFdOpen(Pid); }
                catch (KernelException) { }
            }
            _spawned.Set();
            Reap();
        }, maxStackSize: 256 * 1024) { IsBackground = true, Name = "container-restore" };
        thread.Start();
        _spawned.Wait();
        if (_error is not null) throw _error;
        return failure;
    }

    /// <summary>A restored container that never started (killed while created): it has exited
    /// with <paramref name="status"/> without a process.</summary>
    public void ExitUnstarted(int status)
    {
        if (_spawned.IsSet) return;
        RawStatus = status;
        _exited.Set();
    }

    /// <summary>Reaps children until <paramref name="pid"/> has exited; returns its waitpid status.
    /// The others' statuses are handed on as <see cref="Reap"/> does.</summary>
    private unsafe int WaitFor(int pid)
    {
        while (true)
        {
            int status;
            var got = Libc.Waitpid(-1, &status, 0);
            if (got < 0)
            {
                if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                return 1 << 8; // ECHILD cannot happen while pid is ours
            }
            if (got == pid) return status;
            HandOn(got, status);
        }
    }

    private unsafe void Reap()
    {
        while (true)
        {
            int status;
            var pid = Libc.Waitpid(-1, &status, 0);
            if (pid < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR) continue;
                return; // ECHILD: nothing left to wait for
            }
            if (pid == Pid)
            {
                RawStatus = status;
                _exited.Set();
                continue;
            }
            HandOn(pid, status);
            Reaped?.Invoke();
        }
    }

    /// <summary>The status of a reaped child other than the init goes to whoever registered for it
    /// (<see cref="OnExit"/>), or is kept until they do. Runs on a reaping thread, which may be
    /// unable to create threads: callbacks only record and signal.</summary>
    private void HandOn(int pid, int status)
    {
        Action<int>? callback;
        lock (_children)
        {
            if (!_onExit.Remove(pid, out callback)) _unclaimed[pid] = status;
        }
        callback?.Invoke(status);
    }

    /// <summary>Calls <paramref name="onExit"/> with the waitpid status of child
    /// <paramref name="pid"/> when it is reaped (at once if it already was). It runs on the reaper
    /// thread, so it must only record and signal.</summary>
    public void OnExit(int pid, Action<int> onExit)
    {
        int status;
        lock (_children)
        {
            if (!_unclaimed.Remove(pid, out status)) { _onExit[pid] = onExit; return; }
        }
        onExit(status);
    }

    /// <summary>Spawns a process in the namespaces of the running container (all but mount: a
    /// multithreaded process cannot join a mount namespace, so the child does that itself first
    /// thing; a user namespace is joined through <see cref="NsExec"/>). From a short-lived dedicated thread, for the same reason as the init: after
    /// setns(pid) a thread cannot create threads. Reaped by the init's reaper thread.</summary>
    public int SpawnJoined(Spec spec, string exe, IReadOnlyList<string> argv, IReadOnlyDictionary<int, int> fds)
    {
        var env = Spawn.CurrentEnvironment();
        var done = new ManualResetEventSlim();
        var pid = 0;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                var k = LinuxKernel.Instance;
                k.Unshare(L.CLONE_FS);
                var inUserNs = false;
                foreach (var ns in spec.Linux?.Namespaces ?? [])
                {
                    if (ns.Type == "user") inUserNs = true;
                    if (ns.Type is "mount" or "user") continue;
                    var name = ns.Type switch { "network" => "net", var t => t };
                    k.SetNs($"/proc/{Pid}/ns/{name}", L.NamespaceFlag(ns.Type));
                }
                // In a user namespace the process must join it too (as its root, like the init
                // before it took the container's identity): only the single-threaded helper can.
                pid = inUserNs
                    ? NsExec.Start(spec, new LinuxNamespace { Type = "user", Path = $"/proc/{Pid}/ns/user" }, 0, exe, argv, env, fds)
                    : Spawn.Run(exe, argv, env, fds, newSession: true);
            }
            catch (Exception e) { error = e; } // handed to the caller below
            finally { done.Set(); }
        }, 256 * 1024) { IsBackground = true, Name = "exec-spawn" };
        thread.Start();
        done.Wait();
        if (error is not null) throw error;
        return pid;
    }

    /// <summary>(exit code, signal): the code is 128+signal for a signalled process, as the CRI
    /// reports it.</summary>
    public static (int ExitCode, int? Signal) Decode(int status)
    {
        var sig = status & 0x7f;
        if (sig == 0) return ((status >> 8) & 0xff, null);
        return (128 + sig, sig);
    }
}
