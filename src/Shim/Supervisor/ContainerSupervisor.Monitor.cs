using System.Collections;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.Interop;
using L = CriRuntime.Shim.Kernel.Abi;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The handover between this .NET supervisor and `criruntime-monitor` (C,
/// src/Monitor/monitor.c; docs/shim-protocol.md, "The monitor"). Once the container runs and
/// nothing is in flight, the supervisor execve()s the monitor, in the same process, from the
/// thread that is the init's parent (PR_SET_PDEATHSIG fires when that thread goes, and an exec
/// ends every other thread), handing it the control socket, the open connections and parked
/// waits, the output pipes with their unended lines, the log, the stdin socket and the init's
/// pidfd. The monitor execs `criruntime-shim supervise --resume` (<see cref="Resume"/>) for any
/// request it does not serve itself and for the container's exit; the supervisor resumed so is
/// the init's parent on its main thread, and goes back to the monitor from there when idle again.
/// `CRIRUNTIME_MONITOR=0` keeps the .NET supervisor for the container's whole life.</summary>
public sealed partial class ContainerSupervisor
{
    /// <summary>Taken by a pump around each read and what it does with the bytes, and by the
    /// handover: no output is half-processed when the process image is replaced.</summary>
    private readonly object _pumpGate = new();
    private bool _pumpsPaused;
    /// <summary>The output pipes still open, by stream, with their framers (under the gate).</summary>
    private readonly Dictionary<string, (FdHandle Fd, LogFramer Framer)> _pipes = new(StringComparer.Ordinal);
    private ControlServer? _control;
    private string? _monitor = MonitorPath();
    /// <summary>Resumed from the monitor: the init's parent is the main thread, which waits on
    /// <see cref="_handoverWake"/> rather than in waitpid.</summary>
    private bool _resumed;
    private readonly ManualResetEventSlim _handoverWake = new();
    /// <summary>$CRIRUNTIME_SHIM_FAULT: a fault point for e2e tests, as the daemon's $CRIRUNTIME_FAULT.</summary>
    private static readonly string? Fault = Environment.GetEnvironmentVariable("CRIRUNTIME_SHIM_FAULT");
    private readonly ManualResetEventSlim _handoverFailed = new();
    private volatile ControlServer.Handover? _pendingHandover;

    /// <summary>The monitor binary (<see cref="MonitorBinary"/>): beside this shim.</summary>
    private static string? MonitorPath() => MonitorBinary.Find(Environment.ProcessPath);

    /// <summary>What the monitor can carry: a running container without a terminal (its pty
    /// relay stays in .NET), nobody attached and no interactive exec (their relays live in
    /// this process).</summary>
    private bool CanHandOver() =>
        _monitor is not null && _tty is null && !_stopped.IsSet && !_spawner.HasExited
        && Snapshot().Status == ShimStatus.Running && _attachers.IsEmpty && (_execTtys?.Count ?? 0) == 0
        && _restoreOut is null && _criLog is not null;

    /// <summary>Called by the control loop when the shim is idle. Asks the init's parent thread
    /// to exec the monitor and waits; returns only if it did not (then the shim stays .NET).</summary>
    private bool RequestHandover(ControlServer.Handover handover)
    {
        if (!CanHandOver()) return false;
        _handoverFailed.Reset();
        _pendingHandover = handover;
        if (_resumed) _handoverWake.Set();
        else
        {
            // The reaper thread is in waitpid(2): a child that exits at once wakes it. Any thread's
            // child is reaped by waitpid(-1) on any other thread of the process.
            try { Spawn.Run(_monitor!, ["criruntime-monitor", "noop"], [], new Dictionary<int, int> { [0] = -1, [1] = -1, [2] = -1 }, newSession: false); }
            catch (KernelException e)
            {
                _pendingHandover = null;
                _log.Warn($"monitor {_monitor}: {e.Message}; the shim stays");
                _monitor = null;
                return false;
            }
        }
        _handoverFailed.Wait();
        return false;
    }

    /// <summary>On the init's parent thread (after a reap, or woken in resume mode): execs the
    /// monitor with everything it takes over. Returns only if that failed.</summary>
    private void HandOverIfAsked()
    {
        if (_pendingHandover is not { } handover) return;
        _pendingHandover = null;
        // Resumed, the reaper is another thread: it must not take the init's exit between the
        // check below and the exec (that status would be lost with this image).
        if (_resumed) _spawner.HoldReaping();
        try
        {
            if (!CanHandOver()) return;
            if (_resumed && Fault == "resumed-handover-delay")
            {
                // e2e: an exit that comes between the check and the exec (ShimMonitorTests).
                _log.Info("fault point resumed-handover-delay: the handover waits 2 s (CRIRUNTIME_SHIM_FAULT)");
                Thread.Sleep(2000);
            }
            lock (_pumpGate) _pumpsPaused = true;
            try { ExecMonitor(handover); }
            catch (Exception e) when (e is KernelException or IOException or InvalidOperationException)
            {
                _log.Error($"monitor {_monitor}: {e.Message}; the shim stays");
                _monitor = null;
            }
            lock (_pumpGate)
            {
                _pumpsPaused = false;
                Monitor.PulseAll(_pumpGate);
            }
        }
        finally
        {
            if (_resumed) _spawner.ReleaseReaping();
            _handoverFailed.Set();
        }
    }

    private unsafe void ExecMonitor(ControlServer.Handover handover)
    {
        var fds = new List<int>();
        int Keep(int fd) { if (fd >= 0) fds.Add(fd); return fd; }
        string Hex(byte[] b) => Convert.ToHexStringLower(b);
        var outPipe = _pipes.GetValueOrDefault("stdout");
        var errPipe = _pipes.GetValueOrDefault("stderr");
        var outPartial = outPipe.Framer?.TakePending() ?? [];
        var errPartial = errPipe.Framer?.TakePending() ?? [];
        var conns = string.Join(',', handover.Conns.Select(c => $"{Keep(c.Fd.Fd)}:{Hex(c.Pending)}"));
        var waiters = string.Join(',', handover.Waiters.Select(w => $"W:{Keep(w.Fd)}"));
        var inv = CultureInfo.InvariantCulture;
        string[] argv =
        [
            "criruntime-monitor", "supervise",
            "--id", _id, "--bundle", _bundle, "--state", _stateDir, "--log", _logPath,
            "--shim", Environment.ProcessPath ?? "/proc/self/exe",
            "--pid", _state.Pid.ToString(inv),
            "--pidfd", Keep(_pidfd!.Fd).ToString(inv),
            "--listen", Keep(handover.Listen.Fd).ToString(inv),
            "--out", Keep(outPipe.Fd?.Fd ?? -1).ToString(inv),
            "--err", Keep(errPipe.Fd?.Fd ?? -1).ToString(inv),
            "--stdin", Keep(_stdin?.Fd ?? -1).ToString(inv),
            "--logfd", Keep(_criLog!.Fd).ToString(inv),
            "--out-partial", Hex(outPartial), "--err-partial", Hex(errPartial),
            "--conns", conns, "--waiters", waiters,
        ];
        var env = new List<string>();
        foreach (DictionaryEntry v in Environment.GetEnvironmentVariables()) env.Add($"{v.Key}={v.Value}");
        _log.Info($"container {_id}: idle, the monitor takes over");
        _spawner.LeaveContainerNamespaces();
        foreach (var fd in fds) Libc.SetCloexec(fd, false);
        var owned = new List<nint>();
        try
        {
            Libc.Execve(Spawn.Utf8(_monitor!, owned), Spawn.Strings(argv, owned), Spawn.Strings(env, owned));
            throw KernelException.Last("execve", _monitor!);
        }
        finally
        {
            foreach (var fd in fds) Libc.SetCloexec(fd, true);
            // the unended lines go back to their framers
            outPipe.Framer?.Prime(outPartial);
            errPipe.Framer?.Prime(errPartial);
            foreach (var p in owned) NativeMemory.Free((void*)p);
        }
    }

    /// <summary>poll(2) until <paramref name="fd"/> is readable (or at end of file); false on error.</summary>
    private static unsafe bool WaitReadable(int fd)
    {
        var p = new Libc.PollFd { Fd = fd, Events = 1 /* POLLIN */ };
        while (true)
        {
            if (Libc.Poll(&p, 1, -1) >= 0) return true;
            if (Marshal.GetLastPInvokeError() != Errno.EINTR) return false;
        }
    }

    /// <summary>`supervise --resume WHY`: the monitor handed the container back (WHY: "request",
    /// or "exit": the init has exited, a zombie left for us to reap). Rebuilds the supervisor from
    /// the descriptors it passed, serves, and records the exit or goes back to the monitor.</summary>
    public int Resume(IReadOnlyDictionary<string, string> o)
    {
        _resumed = true;
        try
        {
            int Fd(string name)
            {
                var fd = int.Parse(o.GetValueOrDefault(name, "-1"), CultureInfo.InvariantCulture);
                if (fd >= 0) Libc.SetCloexec(fd, true);
                return fd;
            }
            byte[] Bytes(string name) => Convert.FromHexString(o.GetValueOrDefault(name, ""));
            var spec = SpecFile.Load(_bundle);
            _spec = spec;
            _cgroup = CgroupManagers.Create(spec.Linux?.CgroupsPath ?? _id);
            _state = ShimClient.ReadStateFile(_stateDir) ?? throw new InvalidDataException($"{_stateDir}: no state.json to resume from");
            _pidfd = new FdHandle(Fd("pidfd"));
            _criLog = new CriLogWriter(_logPath, new FdHandle(Fd("logfd")));
            var stdin = Fd("stdin");
            _stdin = stdin >= 0 ? new FdHandle(stdin) : null;
            var pumps = new List<Thread>();
            var outFd = Fd("out");
            var errFd = Fd("err");
            if (outFd >= 0) pumps.Add(Pump(new FdHandle(outFd), "stdout", partial: Bytes("out-partial")));
            if (errFd >= 0) pumps.Add(Pump(new FdHandle(errFd), "stderr", partial: Bytes("err-partial")));
            var pid = int.Parse(o["pid"], CultureInfo.InvariantCulture);
            _spawner.Adopt(pid);

            var conns = new List<(FdHandle, byte[])>();
            foreach (var item in o.GetValueOrDefault("conns", "").Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = item.Split(':');
                conns.Add((new FdHandle(FdOf(parts[0])), Convert.FromHexString(parts.Length > 1 ? parts[1] : "")));
            }
            var waiters = new List<(FdHandle, ShimRequest)>();
            foreach (var item in o.GetValueOrDefault("waiters", "").Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = item.Split(':');
                var fd = new FdHandle(FdOf(parts[1]));
                var left = parts.Length > 2 ? double.Parse(parts[2], CultureInfo.InvariantCulture) / 1000 : 0;
                waiters.Add((fd, parts[0] switch
                {
                    "W" => new ShimRequest { Op = ShimOps.Wait },
                    "T" => new ShimRequest { Op = ShimOps.Wait, Timeout = left },
                    // A stop whose signal was sent: signal 0 sends nothing, SIGKILL follows when the time is up.
                    _ => new ShimRequest { Op = ShimOps.Stop, Signal = 0, Timeout = left },
                }));
            }
            var control = new ControlServer(Path.Combine(_stateDir, StateFiles.Socket), Handle, _log, idle: MemoryTrim.Idle, stream: Stream,
                handover: RequestHandover, canHandOver: CanHandOver, resumed: new ControlServer.Resumed(new FdHandle(Fd("listen")), conns, waiters));
            _control = control;
            _log.Info($"container {_id}: the monitor handed over ({o.GetValueOrDefault("resume")})");

            // This (main) thread is the init's parent now: it stays until the exit, and is the one
            // that execs the monitor again.
            // The init's exit also shows on its pidfd: a resumed shim used to wait here for ever
            // when the previous image's reaper had taken the exit just before its exec of the
            // monitor (now held: ContainerSpawner.HoldReaping). As a last resort the wait still
            // looks at the pidfd once a second, and reaps here what the reaper has not reported
            // within two looks (logged as an error: it should never happen).
            var missed = 0;
            while (true)
            {
                WaitHandle.WaitAny([_spawner.ExitedHandle, _handoverWake.WaitHandle], TimeSpan.FromSeconds(1));
                if (_spawner.HasExited) break;
                if (_handoverWake.IsSet)
                {
                    _handoverWake.Reset();
                    HandOverIfAsked();
                    continue;
                }
                if (!Libc.PidfdWaitExit(_pidfd, TimeSpan.Zero) || ++missed < 2) continue;
                var found = _spawner.ReapMissedExit();
                _log.Error($"container {_id}: its init {pid} had exited and the reaper had not reported it; {(found ? "reaped it here" : "its status is lost (reaped elsewhere): exit code 255")}");
                break;
            }
            _handoverFailed.Set();
            return Finish(pumps, control);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or InvalidDataException or FormatException or KernelException or KeyNotFoundException)
        {
            // Nothing can supervise the container now: it dies with this process (PDEATHSIG), and
            // the daemon records exit 255 for a shim that died.
            _log.Error($"resume {_id}: {e.Message}");
            return 1;
        }

        int FdOf(string s)
        {
            var fd = int.Parse(s, CultureInfo.InvariantCulture);
            Libc.SetCloexec(fd, true);
            return fd;
        }
    }
}
