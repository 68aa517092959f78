using System.Text.Json;
using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using CriRuntime.Files;
using CriRuntime.Operations;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The long-lived half of the shim: creates the container, then pumps its output into
/// the CRI log, answers the control socket, and records the exit in state.json before leaving.
/// Every state change goes through <see cref="Transition"/>, which persists atomically.</summary>
public sealed partial class ContainerSupervisor
{
    private readonly string _id, _bundle, _stateDir, _logPath;
    private readonly string? _traceParent;
    private readonly ShimLog _log;
    private readonly Lock _lock = new();
    private readonly Lock _updateLock = new();
    private readonly ManualResetEventSlim _stopped = new();
    private readonly ContainerSpawner _spawner = new();
    private ShimState _state;
    private SyncChannel? _sync;
    private FdHandle? _pidfd;
    private CriLogWriter? _criLog;
    /// <summary>The state files the daemon reads: owner read-write, group read.</summary>
    private const UnixFileMode StateFileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;
    private ICgroupManager? _cgroup;
    private string? _startError;
    /// <summary>bundle/restore.json: the container is restored by CRIU at start, not started by an init.</summary>
    private RestoreSpec? _restore;
    /// <summary>The write ends of the new stdout/stderr pipes, handed to CRIU at start.</summary>
    private FdHandle? _restoreOut, _restoreErr;
    /// <summary>The container's spec: config.json as loaded, then as each update rewrote it.</summary>
    private volatile Spec? _spec;
    /// <summary>create's steps as the shim timed them, reported with "ok" (docs/observability.md).</summary>
    private readonly List<ShimPhase> _createPhases = [];

    private void Phase(string name, long start) => _createPhases.Add(new ShimPhase { Name = name, Start = start, End = ShimPhase.Now() });

    /// <param name="traceParent">The daemon's span for the create (`--traceparent`), named in the shim's log.</param>
    public ContainerSupervisor(string id, string bundle, string stateDir, string logPath, string? traceParent = null)
    {
        _id = id;
        _bundle = Path.GetFullPath(bundle);
        _stateDir = Path.GetFullPath(stateDir);
        _logPath = Path.GetFullPath(logPath);
        _log = new ShimLog(Path.Combine(_stateDir, StateFiles.ShimLog));
        _traceParent = traceParent;
        _state = new ShimState { Id = id, ShimPid = Environment.ProcessId, CreatedAt = DateTimeOffset.UtcNow };
    }

    /// <summary>Creates the container; on success reports "ok &lt;shim pid&gt; &lt;container pid&gt;"
    /// and its timed phases ("NAME:START:END", Unix nanoseconds) through <paramref name="report"/>,
    /// then supervises until the container exits.</summary>
    public int Run(Action<string> report)
    {
        var setup = ShimPhase.Now();
        var k = LinuxKernel.Instance;
        List<Thread> pumps;
        ControlServer control;
        // The reaper is the init's parent thread: the handover to the monitor is done there.
        _spawner.Reaped = HandOverIfAsked;
        try
        {
            // Whatever create made is undone, in reverse, if a later step fails.
            using var undo = new UndoSteps((step, e) => _log.Warn($"create {_id}: undo {step}: {e.Message}"));
            // Orphans of the container (an exec'd process whose parent died) come to us, not to
            // the host's init, and the shim reaps them.
            k.Prctl(L.PR_SET_CHILD_SUBREAPER, 1);
            Directory.CreateDirectory(_stateDir);
            // A long-lived process must not keep the caller's working directory (and its mount) busy.
            k.Chdir("/");
            var spec = SpecFile.Load(_bundle);
            CheckSupported(spec);
            _spec = spec;
            _criLog = new CriLogWriter(_logPath);
            _cgroup = CgroupManagers.Create(spec.Linux?.CgroupsPath ?? _id);
            var cgroup = _cgroup;
            // Registered before the cgroup is made: a Create that fails half-way leaves directories.
            undo.Add("remove cgroup", cgroup.Destroy);
            // From here on the phases time the container's set-up; before, the shim's own (spec, log, cgroup layout).
            Phase("shim.setup", setup);
            var phase = ShimPhase.Now();
            cgroup.Create(CgroupResourcesFromSpec.Map(spec.Linux?.Resources));
            Phase("shim.cgroup", phase);
            // The launcher ran us at the helpers' nice (HelperPriority); the container's processes,
            // and everything this shim starts from now on, get the daemon's.
            var baseNice = HelperPriority.BaseFromEnvironment();
            if (!HelperPriority.ResetProcess(baseNice, out var niceErrno))
                _log.Warn($"container {_id}: cannot set the shim's nice value back to {baseNice} (errno {niceErrno}); its processes inherit the launcher's");

            if (LoadRestore() is { } restore)
            {
                // No init: CRIU brings the checkpointed one back at start, writing into these pipes.
                _restore = restore;
                var (outR, outW) = Spawn.Pipe();
                var (errR, errW) = Spawn.Pipe();
                (_restoreOut, _restoreErr) = (outW, errW);
                undo.Add("close restore pipes", CloseRestorePipes);
                pumps = [Pump(outR, "stdout"), Pump(errR, "stderr")];
                AtomicFile.Write(Path.Combine(_stateDir, StateFiles.ShimPid), System.Text.Encoding.UTF8.GetBytes($"{Environment.ProcessId}\n"), StateFileMode, durable: false);
                Transition(s => s);
                control = new ControlServer(Path.Combine(_stateDir, StateFiles.Socket), Handle, _log, idle: MemoryTrim.Idle, stream: Stream, handover: RequestHandover, canHandOver: CanHandOver);
                _control = control;
                undo.Commit();
                goto created;
            }

            // With a terminal the init makes its own pty and sends the master ("pty" below);
            // until then its stdio is /dev/null.
            var terminal = spec.Process?.Terminal == true;
            var (outRead, outWrite) = terminal ? (null, null) : Spawn.Pipe();
            var (errRead, errWrite) = terminal ? (null, null) : Spawn.Pipe();
            // CRI stdin: a socket, so that attach can hand the daemon the container's stdin
            // itself and stdin_once is one shutdown(SHUT_WR) (docs/shim-protocol.md, "Streams").
            var (stdinOurs, stdinChild) = !terminal && WantsStdin(spec) ? Spawn.SocketPair() : (null, null);
            _stdin = stdinOurs;
            var (syncParent, syncChild) = Spawn.SocketPair();
            var self = Environment.ProcessPath ?? "/proc/self/exe";
            var fds = new Dictionary<int, int>
            {
                [0] = stdinChild?.Fd ?? -1,
                [1] = outWrite?.Fd ?? -1,
                [2] = errWrite?.Fd ?? -1,
                [ContainerInit.SyncFd] = syncChild.Fd,
            };
            int pid;
            var rootfs = Path.GetFullPath(Path.Combine(_bundle, spec.Root?.Path ?? "rootfs"));
            phase = ShimPhase.Now();
            using (outWrite) using (errWrite) using (syncChild) using (stdinChild)
                pid = _spawner.Start(spec, self, ["criruntime-shim", "init", "--bundle", _bundle], fds, rootfs);
            Phase("shim.spawn", phase);
            _pidfd = Spawn.PidFdOpen(pid);
            var pidfd = _pidfd;
            undo.Add("kill init", () => Spawn.Signal(pidfd, L.SIGKILL));
            _state = _state with { Pid = pid };
            _log.Info($"container {_id}: init pid {pid}{(_traceParent is null ? "" : $" (traceparent {_traceParent})")}");

            phase = ShimPhase.Now();
            _sync = new SyncChannel(syncParent);
            _cgroup.AddProcess(pid);
            if (UserNamespaces.UserNamespace(spec) is not null) UserNamespaces.SendSetup(k, _sync, spec, rootfs, pid);
            _sync.Send("go");
            while (true)
            {
                var line = _sync.Receive();
                if (line == "created") break;
                if (line == Terminal.PtyMessage) { _tty = _sync.TakeFd() ?? throw new InvalidDataException("init sent \"pty\" without the terminal"); continue; }
                if (line is not null && line.StartsWith("warn ", StringComparison.Ordinal)) { _log.Warn(line[5..]); continue; }
                var why = line is not null && line.StartsWith("error ", StringComparison.Ordinal) ? line[6..] : InitDied(errRead);
                throw new InvalidOperationException(why);
            }
            Phase("shim.init", phase);

            // A terminal's output is logged as stdout (as other runtimes do).
            pumps = _tty is not null ? [Pump(_tty, "stdout", ownsFd: false)] : [Pump(outRead!, "stdout"), Pump(errRead!, "stderr")];
            // Pids mean nothing after a reboot: atomic, not durable (AtomicFile; docs/shim-protocol.md).
            AtomicFile.Write(Path.Combine(_stateDir, StateFiles.ShimPid), System.Text.Encoding.UTF8.GetBytes($"{Environment.ProcessId}\n"), StateFileMode, durable: false);
            AtomicFile.Write(Path.Combine(_stateDir, StateFiles.ContainerPid), System.Text.Encoding.UTF8.GetBytes($"{pid}\n"), StateFileMode, durable: false);
            Transition(s => s);
            control = new ControlServer(Path.Combine(_stateDir, StateFiles.Socket), Handle, _log, idle: TrimUnlessAwaitingStart, stream: Stream, handover: RequestHandover, canHandOver: CanHandOver);
            _control = control;
            undo.Commit();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or InvalidDataException or NotSupportedException or ArgumentException or UnauthorizedAccessException)
        {
            _log.Error($"create {_id}: {e.Message}");
            report("error " + e.Message);
            return 1;
        }

    created:
        report($"ok {Environment.ProcessId} {_state.Pid}{string.Concat(_createPhases.Select(p => $" {p.Name}:{p.Start}:{p.End}"))}");
        TrimUnlessAwaitingStart();
        return Finish(pumps, control);
    }

    /// <summary>The idle trim (a compacting GC, then the clean pages dropped), except while a
    /// container set up by an init waits for its start: the daemon sends `start` right after
    /// `create` (StartContainer does both), and a trim then would hold up the start (the GC stops
    /// the control thread too; the exit monitor's parked `wait` also lands in this idle). After the
    /// start the shim goes idle again and execs the monitor, or trims then. A restored container's
    /// shim may be made well ahead of its start (a migration): it trims at once.</summary>
    private void TrimUnlessAwaitingStart()
    {
        if (_restore is null && Snapshot().Status == ShimStatus.Created) return;
        MemoryTrim.Idle();
    }

    /// <summary>Waits for the container's exit and records it: the rest of its cgroup killed,
    /// its last output logged, the final state written durably, the waiters answered.</summary>
    private int Finish(List<Thread> pumps, ControlServer control)
    {
        _spawner.WaitExit();
        // In its own pid namespace the container's other processes died with its init. In the
        // pod's shared one (joined by path) they live on, reparented to the pod init, and
        // PR_SET_PDEATHSIG never reaches them either: the container's cgroup is what holds them all.
        if (_spec?.Linux?.Namespaces?.Any(n => n.Type == "pid" && !string.IsNullOrEmpty(n.Path)) == true)
        {
            try { _cgroup?.KillAll(); } catch (IOException e) { _log.Warn($"cgroup kill: {e.Message}"); }
        }
        // Let the pumps drain what the container wrote last; with the pid namespace gone no one
        // holds the pipes, so this is quick.
        CloseRestorePipes();
        foreach (var t in pumps) t.Join(TimeSpan.FromSeconds(2));
        _attachers.CloseAll();

        var (code, signal) = ContainerSpawner.Decode(_spawner.RawStatus);
        var oom = SafeOom();
        Transition(s => s with
        {
            Status = ShimStatus.Stopped,
            FinishedAt = DateTimeOffset.UtcNow,
            ExitCode = code,
            Signal = signal,
            OomKilled = oom,
            Reason = _startError is not null ? "StartError" : oom ? "OOMKilled" : code == 0 ? "Completed" : "Error",
            Message = _startError,
        });
        _log.Info($"container {_id}: exited with {code}{(signal is { } sg ? $" (signal {sg})" : "")}");
        _stopped.Set();
        control.Close(TimeSpan.FromSeconds(5));
        // After the last update (which checks _stopped under the same lock): none writes to a removed cgroup.
        lock (_updateLock)
        {
            try { _cgroup?.Destroy(); } catch (IOException e) { _log.Warn($"cgroup destroy: {e.Message}"); }
        }
        _criLog?.Dispose();
        _tty?.Dispose();
        _stdin?.Dispose();
        return 0;
    }

    /// <summary>Why the init closed the sync socket without a word: how it ended and the last of
    /// what it wrote on stderr (a runtime that failed before its error handler ran writes there).
    /// It has closed the socket, so it is exiting: its end is waited for briefly.</summary>
    private string InitDied(FdHandle? stderr)
    {
        var how = _spawner.WaitExit(TimeSpan.FromSeconds(2))
            ? ContainerSpawner.Decode(_spawner.RawStatus) switch
            {
                (_, { } signal) => $"killed by signal {signal}",
                var (code, _) => $"exit code {code}",
            }
            : "still running";
        var said = "";
        if (stderr is not null && _spawner.HasExited)
        {
            var buffer = new byte[2048];
            var length = 0;
            try
            {
                int n;
                while (length < buffer.Length && (n = Libc.ReadSome(stderr.Fd, buffer.AsSpan(length), "init stderr")) > 0) length += n;
            }
            catch (KernelException) { } // nothing more to learn
            said = System.Text.Encoding.UTF8.GetString(buffer, 0, length).Trim();
            if (said.Length > 0) said = ": " + said.ReplaceLineEndings(" | ");
        }
        return $"container init exited during setup ({how}){said}";
    }

    /// <summary>Refuses what the shim cannot do yet rather than run a container with less
    /// isolation than asked. An AppArmor profile on a host without AppArmor is ignored, as runc does.</summary>
    private void CheckSupported(Spec spec)
    {
        if (!string.IsNullOrEmpty(spec.Process?.ApparmorProfile))
        {
            var enabled = File.Exists("/sys/module/apparmor/parameters/enabled")
                && File.ReadAllText("/sys/module/apparmor/parameters/enabled").Trim() == "Y";
            if (enabled) throw new NotSupportedException($"process.apparmorProfile {spec.Process.ApparmorProfile}: AppArmor is not supported yet");
            _log.Warn($"process.apparmorProfile {spec.Process.ApparmorProfile} ignored: AppArmor is not enabled on this host");
        }
        if (!string.IsNullOrEmpty(spec.Process?.SelinuxLabel))
            _log.Warn($"process.selinuxLabel {spec.Process.SelinuxLabel} ignored: SELinux is not supported");
    }

    private bool SafeOom()
    {
        try { return _cgroup?.OomKilled() ?? false; }
        catch (IOException e) { _log.Warn($"cgroup oom check: {e.Message}"); return false; }
    }

    /// <summary>Whether the daemon asked for a stdin (the CRI's stdin: true; the OCI spec has no
    /// field for it).</summary>
    private static bool WantsStdin(Spec spec) =>
        spec.Annotations?.GetValueOrDefault(ShimAnnotations.Stdin) == "true";

    private Thread Pump(FdHandle read, string stream, bool ownsFd = true, byte[]? partial = null)
    {
        var framer = new LogFramer((partial, content) => _criLog!.Write(stream, partial, content.Span));
        if (ownsFd) _pipes[stream] = (read, framer);
        var t = new Thread(() =>
        {
            try { if (partial is { Length: > 0 }) framer.Prime(partial); }
            catch (IOException e) { _log.Error($"log {_logPath}: {e.Message}"); }
            var buffer = new byte[8 * 1024]; // live for the container's whole life: kept small
            while (true)
            {
                // Readable first, then read under the gate: the handover to the monitor takes the
                // gate, so no pump holds bytes it has read but not yet logged when the exec happens.
                if (!WaitReadable(read.Fd)) break;
                lock (_pumpGate)
                {
                    while (_pumpsPaused) Monitor.Wait(_pumpGate);
                    int n;
                    try { n = Libc.ReadSome(read.Fd, buffer, stream); }
                    catch (KernelException e) when (e.Errno == 5 /* EIO */ && !ownsFd) { n = 0; } // the terminal has no writer left
                    catch (KernelException e) { _log.Error($"{stream}: {e.Message}"); n = 0; }
                    if (n == 0)
                    {
                        _pipes.Remove(stream);
                        break;
                    }
                    try { framer.Feed(buffer.AsSpan(0, n)); }
                    catch (IOException e) { _log.Error($"log {_logPath}: {e.Message}"); }
                    _attachers.Broadcast(stream, buffer.AsSpan(0, n));
                }
            }
            _attachers.End(stream);
            try { framer.Finish(); } catch (IOException e) { _log.Error($"log {_logPath}: {e.Message}"); }
            if (ownsFd) read.Dispose();
        }, 256 * 1024) { IsBackground = true, Name = "pump-" + stream };
        t.Start();
        return t;
    }

    private void Transition(Func<ShimState, ShimState> change)
    {
        lock (_lock)
        {
            var next = change(_state);
            // Created and running are states of a live process, void after a reboot: atomic is
            // enough. The exit status is the record that must outlast everything: durable.
            AtomicFile.Write(Path.Combine(_stateDir, StateFiles.State), JsonSerializer.SerializeToUtf8Bytes(next, ShimJson.Transient().ShimState), StateFileMode,
                durable: next.Status == ShimStatus.Stopped);
            _state = next;
        }
    }

    private ShimState Snapshot()
    {
        lock (_lock) return _state;
    }

    private ShimResponse Handle(ShimRequest r) => r.Op switch
    {
        ShimOps.State => Ok(),
        ShimOps.Start => Start(r.TraceParent),
        ShimOps.Kill => Kill(r.Signal ?? L.SIGKILL),
        ShimOps.Wait => Wait(r.Timeout),
        ShimOps.Stop => Stop(r.Signal ?? L.SIGTERM, r.Timeout ?? ShimRequest.DefaultStopTimeout),
        ShimOps.ReopenLog => ReopenLog(),
        ShimOps.Exec => Exec(r),
        ShimOps.Resize => Resize(r),
        ShimOps.Update => Update(r),
        _ => new ShimResponse { Ok = false, Error = $"unknown op \"{r.Op}\"", State = Snapshot() },
    };

    private ShimResponse Ok() => new() { Ok = true, State = Snapshot() };

    /// <param name="traceParent">The daemon's span for the start, named in the shim's log.</param>
    private ShimResponse Start(string? traceParent)
    {
        if (traceParent is not null) _log.Info($"start {_id} (traceparent {traceParent})");
        lock (_lock)
        {
            if (_state.Status != ShimStatus.Created)
                return new ShimResponse { Ok = false, Error = $"container {_id} is {_state.Status}, not created", State = _state };
            if (_restore is { } restore) return StartRestore(restore);
            var started = ShimPhase.Now();
            _sync!.Send("start");
            // The init's end of the socket is close-on-exec: end of file means execve succeeded.
            var answer = _sync.Receive();
            if (answer is not null)
            {
                _startError = answer.StartsWith("error ", StringComparison.Ordinal) ? answer[6..] : answer;
                _log.Error($"start {_id}: {_startError}");
                return new ShimResponse { Ok = false, Error = _startError, State = _state };
            }
            Transition(s => s with { Status = ShimStatus.Running, StartedAt = DateTimeOffset.UtcNow });
            _sync.Dispose();
            return new ShimResponse { Ok = true, State = _state, Phases = [new ShimPhase { Name = "shim.exec", Start = started, End = ShimPhase.Now() }] };
        }
    }

    private ShimResponse Kill(int signal)
    {
        if (!_stopped.IsSet && !EndUnstartedRestore(signal)) Spawn.Signal(_pidfd!, signal);
        return Ok();
    }

    private ShimResponse Wait(double? timeoutSeconds)
    {
        var done = timeoutSeconds is { } t ? _stopped.Wait(TimeSpan.FromSeconds(t)) : _stopped.Wait(Timeout.Infinite);
        return done ? Ok() : new ShimResponse { Ok = false, Error = "timeout", State = Snapshot() };
    }

    /// <summary>The stop signal, then SIGKILL once the grace period is over. pid 1 of a pid
    /// namespace ignores signals it has no handler for, hence the SIGKILL.</summary>
    private ShimResponse Stop(int signal, double timeoutSeconds)
    {
        if (EndUnstartedRestore(L.SIGKILL)) { _stopped.Wait(); return Ok(); }
        if (!_stopped.IsSet && timeoutSeconds > 0)
        {
            Spawn.Signal(_pidfd!, signal);
            if (_stopped.Wait(TimeSpan.FromSeconds(timeoutSeconds))) return Ok();
        }
        if (!_stopped.IsSet) Spawn.Signal(_pidfd!, L.SIGKILL);
        _stopped.Wait();
        return Ok();
    }

    /// <summary>Runs a command in the running container with the container process's identity,
    /// capabilities and seccomp profile, and returns its exit status and output (ExecSync).</summary>
    private ShimResponse Exec(ShimRequest r)
    {
        if (r.Args is not { Count: > 0 }) return new ShimResponse { Ok = false, Error = "exec: args is empty", State = Snapshot() };
        if (Snapshot().Status != ShimStatus.Running) return new ShimResponse { Ok = false, Error = $"container {_id} is not running", State = Snapshot() };
        var spec = _spec!;
        var execSpec = ExecInit.ForExec(spec, r);

        var (outRead, outWrite) = Spawn.Pipe();
        var (errRead, errWrite) = Spawn.Pipe();
        var (syncParent, syncChild) = Spawn.SocketPair();
        using var sync = new SyncChannel(syncParent);
        var fds = new Dictionary<int, int> { [0] = -1, [1] = outWrite.Fd, [2] = errWrite.Fd, [ContainerInit.SyncFd] = syncChild.Fd };
        var exited = new ManualResetEventSlim();
        var status = 0;
        int pid;
        using (outWrite) using (errWrite) using (syncChild)
            pid = _spawner.SpawnJoined(spec, Environment.ProcessPath ?? "/proc/self/exe",
                ["criruntime-shim", "exec-init", "--pid", _state.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)], fds);
        using var pidfd = Spawn.PidFdOpen(pid);
        _spawner.OnExit(pid, s => { status = s; exited.Set(); });
        _cgroup?.AddProcess(pid);

        var stdout = Collect(outRead);
        var stderr = Collect(errRead);
        sync.Send(JsonSerializer.Serialize(execSpec, OciJsonContext.Default.Spec));
        var answer = sync.Receive(); // end of file: exec'd
        var timedOut = false;
        if (r.Timeout is { } t && !exited.Wait(TimeSpan.FromSeconds(t)))
        {
            timedOut = true;
            Spawn.Signal(pidfd, Abi.SIGKILL);
        }
        exited.Wait();
        stdout.Thread.Join();
        stderr.Thread.Join();
        if (answer is not null)
            return new ShimResponse { Ok = false, Error = answer.StartsWith("error ", StringComparison.Ordinal) ? answer[6..] : answer, State = Snapshot() };
        var (code, signal) = ContainerSpawner.Decode(status);
        return new ShimResponse
        {
            Ok = true,
            State = Snapshot(),
            Exec = new ExecResult { ExitCode = code, Signal = signal, Stdout = stdout.Bytes(), Stderr = stderr.Bytes(), TimedOut = timedOut },
        };
    }

    /// <summary>Reads a pipe to end of file on its own thread, keeping at most
    /// <see cref="ExecResult.MaxOutput"/> bytes (the rest is read and dropped so the writer never blocks).</summary>
    private static (Thread Thread, Func<byte[]> Bytes) Collect(FdHandle read)
    {
        var buffer = new MemoryStream();
        var t = new Thread(() =>
        {
            using (read)
            {
                var chunk = new byte[16 * 1024];
                int n;
                try
                {
                    while ((n = Libc.ReadSome(read.Fd, chunk, "exec output")) > 0)
                        if (buffer.Length < ExecResult.MaxOutput) buffer.Write(chunk, 0, (int)Math.Min(n, ExecResult.MaxOutput - buffer.Length));
                }
                catch (KernelException) { } // a broken pipe ends the output like end of file
            }
        }, 256 * 1024) { IsBackground = true, Name = "exec-output" };
        t.Start();
        return (t, buffer.ToArray);
    }

    /// <summary>New resources for the live container: its cgroup and the bundle's config.json
    /// (<see cref="ResourceUpdater"/>). One update at a time; none once the container has exited
    /// (its cgroup is being removed).</summary>
    private ShimResponse Update(ShimRequest r)
    {
        if (r.Resources is null) return new ShimResponse { Ok = false, Error = "update: resources is required", State = Snapshot() };
        lock (_updateLock)
        {
            if (_stopped.IsSet) return new ShimResponse { Ok = false, Error = $"container {_id} has exited", State = Snapshot() };
            _spec = new ResourceUpdater(_bundle, _cgroup!, (step, e) => _log.Warn($"update {_id}: undo {step}: {e.Message}")).Apply(_spec!, r.Resources);
        }
        _log.Info($"container {_id}: resources updated");
        return Ok();
    }

    private ShimResponse ReopenLog()
    {
        _criLog!.Reopen();
        return Ok();
    }
}
