using System.Diagnostics;
using System.Text.Json.Serialization;
using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.PartitionView;

/// <summary>What Status verbose info reports about lxcfs.</summary>
public sealed record LxcfsInfo(string Path, string Mount, bool Healthy, int? Pid, int Restarts, string Problem);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(LxcfsInfo))]
internal sealed partial class LxcfsJson : JsonSerializerContext;

/// <summary>Debian's lxcfs, run and supervised by the daemon: its FUSE mount is STATE/lxcfs,
/// which containers with the /proc view bind their files from (docs/partition-view.md).
/// lxcfs is not killed when the daemon stops (containers keep reading it): the next daemon adopts
/// the one running (its pid file and mount), and starts one when there is none. When it dies the
/// supervisor starts a new one on the same mount point (the old mount is detached first) and puts
/// its files into every running container that had the old one's (<see cref="ProcViewRemount"/>).</summary>
public sealed partial class Lxcfs(CriRuntimeConfig config, ILogger<Lxcfs> log, State.ContainerStore? containers = null, IHostKernel? kernel = null)
    : IProcViewSource, IDisposable
{
    private const int MNT_DETACH = 2;
    private static readonly TimeSpan MountTimeout = TimeSpan.FromSeconds(10);
    /// <summary>More deaths than this in <see cref="RestartWindow"/>: given up, reported unhealthy.</summary>
    private const int MaxRestarts = 5;
    private static readonly TimeSpan RestartWindow = TimeSpan.FromMinutes(1);

    private readonly IHostKernel _kernel = kernel ?? HostKernel.Instance;
    private readonly object _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<long> _deaths = [];
    private FdHandle? _pidfd;
    private int? _pid;
    private int _restarts;
    private string _problem = "";
    private string _binary = "";
    private bool _watching;
    private bool _gaveUp;

    public string MountDir => Path.Combine(config.State, "lxcfs");
    private string PidFile => Path.Combine(config.State, "lxcfs.pid");
    private string LogFile => Path.Combine(config.State, "lxcfs.log");

    /// <summary>The lxcfs binary: partition_view.lxcfs_path, else lxcfs on the PATH; null when none.</summary>
    public string? Find()
    {
        var configured = config.PartitionView.LxcfsPath;
        if (configured.Length > 0) return File.Exists(configured) ? configured : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var p = Path.Combine(dir, "lxcfs");
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>At daemon start: adopts the lxcfs a previous daemon left; starts one now only when
    /// the view is on node-wide or for a handler (otherwise the first pod that asks starts it: a
    /// node whose pods never ask runs no lxcfs). Never fails the daemon: without lxcfs only pods
    /// that ask for the view are refused.</summary>
    public void Start()
    {
        var eager = config.PartitionView.Proc || config.Runtime.Handlers.Values.Any(h => h.ProcView);
        lock (_gate)
        {
            if (!Located()) return;
            try
            {
                if (TryAdopt()) { _problem = ""; StartWatching(); }
                else if (eager) LaunchLocked();
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or System.ComponentModel.Win32Exception or UnauthorizedAccessException)
            {
                _problem = $"lxcfs could not be started: {e.Message}";
                LogStartFailed(log, e.Message);
            }
        }
    }

    /// <summary>The lxcfs mount to bind from, starting lxcfs if none runs yet.</summary>
    public string RequireMount()
    {
        lock (_gate)
        {
            // Dead but not yet replaced: the watcher is about to start a new one; wait for it.
            if (_pidfd is { } dead && Libc.PidfdWaitExit(dead, TimeSpan.Zero))
            {
                var deadline = Environment.TickCount64 + (long)(MountTimeout.TotalMilliseconds * 2);
                while (_pidfd == dead && Environment.TickCount64 < deadline)
                    Monitor.Wait(_gate, TimeSpan.FromMilliseconds(Math.Max(1, deadline - Environment.TickCount64)));
            }
            if (_pidfd is null && !_gaveUp && Located())
            {
                try { LaunchLocked(); }
                catch (Exception e) when (e is IOException or InvalidOperationException or System.ComponentModel.Win32Exception or UnauthorizedAccessException)
                {
                    _problem = $"lxcfs could not be started: {e.Message}";
                    LogStartFailed(log, e.Message);
                }
            }
            if (_problem.Length > 0) throw Fail.FailedPrecondition($"the partition /proc view needs lxcfs: {_problem}");
            if (!Healthy()) throw Fail.FailedPrecondition($"the partition /proc view needs lxcfs: lxcfs at {MountDir} does not answer");
            return MountDir;
        }
    }

    /// <summary>Finds the binary; false (with the reason kept) when there is none.</summary>
    private bool Located()
    {
        if (_binary.Length > 0) return true;
        if (Find() is { } bin) { _binary = bin; return true; }
        _problem = config.PartitionView.LxcfsPath.Length > 0
            ? $"partition_view.lxcfs_path {config.PartitionView.LxcfsPath} not found"
            : "lxcfs is not installed (Debian's lxcfs package; hack/deps.sh installs it)";
        return false;
    }

    private void LaunchLocked()
    {
        Launch();
        _problem = Healthy() ? "" : $"lxcfs at {MountDir} does not answer";
        StartWatching();
    }

    private void StartWatching()
    {
        if (_watching) return;
        _watching = true;
        new Thread(Watch, 128 * 1024) { IsBackground = true, Name = "lxcfs" }.Start();
    }

    public LxcfsInfo Info()
    {
        lock (_gate)
        {
            Located();
            var problem = _problem.Length == 0 && _pidfd is null ? "not running (the first pod that asks for the view starts it)" : _problem;
            return new LxcfsInfo(_binary, MountDir, _pidfd is not null && _problem.Length == 0 && Healthy(), _pidfd is null ? null : _pid, _restarts, problem);
        }
    }

    /// <summary>The mount answers: a file it serves can be read.</summary>
    private bool Healthy()
    {
        try { return File.ReadAllText(Path.Combine(MountDir, "proc", "uptime")).Length > 0; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private bool Mounted() =>
        Checkpoint.DumpPlan.ParseMountInfo(File.ReadAllText("/proc/self/mountinfo"))
            .Any(m => m.MountPoint == MountDir && m.FsType.StartsWith("fuse", StringComparison.Ordinal));

    /// <summary>The lxcfs of the pid file when it is alive, is lxcfs serving our mount point, and
    /// the mount answers.</summary>
    private bool TryAdopt()
    {
        if (!File.Exists(PidFile) || !int.TryParse(File.ReadAllText(PidFile).Trim(), out var pid) || pid <= 0) return false;
        string[] argv;
        try { argv = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries); }
        catch (IOException) { return false; }
        if (argv.Length == 0 || Path.GetFileName(argv[0]) != "lxcfs" || !argv.Contains(MountDir)) return false;
        if (!Mounted() || !Healthy()) return false;
        var pidfd = Libc.PidfdOpen(pid);
        if (pidfd is null) return false;
        _pidfd = pidfd;
        _pid = pid;
        LogAdopted(log, pid, MountDir);
        return true;
    }

    /// <summary>Starts lxcfs on <see cref="MountDir"/> (detaching a stale mount there first) and
    /// waits until its mount is there, or it exited.</summary>
    private void Launch()
    {
        Directory.CreateDirectory(config.State);
        if (Mounted()) _kernel.Umount2(MountDir, MNT_DETACH); // a dead lxcfs's: "transport endpoint is not connected"
        Directory.CreateDirectory(MountDir);
        // Its own session (a terminal's ^C to the daemon does not reach it), stdio to a log file
        // (not the daemon's pipes, which close when the daemon exits), in the foreground so that
        // its pid is the one in the pid file.
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        foreach (var a in new[]
        {
            "-c", "exec setsid \"$0\" \"$@\" </dev/null >>\"$LXCFS_LOG\" 2>&1",
            _binary, "--foreground", "--pidfile=" + PidFile, "--enable-cfs", "--enable-loadavg", "--enable-pidfd", MountDir,
        }) psi.ArgumentList.Add(a);
        psi.Environment["LXCFS_LOG"] = LogFile;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {_binary}");
        var pidfd = Libc.PidfdOpen(p.Id) ?? throw new InvalidOperationException($"{_binary} exited at once (see {LogFile})");
        if (!WaitForMount(pidfd))
        {
            Libc.PidfdSignal(pidfd, Libc.SIGKILL);
            pidfd.Dispose();
            throw new InvalidOperationException($"{_binary} did not mount {MountDir} within {MountTimeout.TotalSeconds:0} s (see {LogFile})");
        }
        _pidfd = pidfd;
        _pid = p.Id;
        LogStarted(log, p.Id, MountDir);
    }

    /// <summary>Until lxcfs's mount appears (the kernel raises POLLPRI on /proc/self/mountinfo at
    /// every mount) or lxcfs exits (its pidfd becomes readable); false on exit or timeout.</summary>
    private unsafe bool WaitForMount(FdHandle pidfd)
    {
        using var mountinfo = new FileStream("/proc/self/mountinfo", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
        var deadline = Environment.TickCount64 + (long)MountTimeout.TotalMilliseconds;
        var fds = stackalloc Libc.PollFd[2];
        while (true)
        {
            if (Mounted()) return true;
            fds[0] = new Libc.PollFd { Fd = (int)mountinfo.SafeFileHandle.DangerousGetHandle(), Events = Libc.POLLPRI };
            fds[1] = new Libc.PollFd { Fd = pidfd.Fd, Events = Libc.POLLIN };
            var left = deadline - Environment.TickCount64;
            if (left <= 0) return Mounted();
            var n = Libc.Poll(fds, 2, (int)left);
            if (n < 0 && Errno.Current != Errno.EINTR) throw Errno.Exception("poll", "/proc/self/mountinfo", Errno.Current);
            if ((fds[1].Revents & Libc.POLLIN) != 0) return Mounted();
            // Reading the file to its end re-arms POLLPRI for the next change.
            if ((fds[0].Revents & Libc.POLLPRI) != 0) { mountinfo.Seek(0, SeekOrigin.Begin); mountinfo.CopyTo(Stream.Null); }
        }
    }

    /// <summary>Waits for lxcfs to exit; then starts a new one, unless it keeps dying.</summary>
    private void Watch()
    {
        while (!_stop.IsCancellationRequested)
        {
            var pidfd = _pidfd;
            if (pidfd is null) { lock (_gate) _watching = false; return; }
            if (!Libc.PidfdWaitExit(pidfd, TimeSpan.FromSeconds(5))) continue; // wakes to see _stop
            if (_stop.IsCancellationRequested) return;
            lock (_gate)
            {
                try { Replace(pidfd); }
                finally { Monitor.PulseAll(_gate); }
                if (!_watching) return;
            }
        }
    }

    /// <summary>After lxcfs <paramref name="pidfd"/> exited: a new one, unless it keeps dying.
    /// Clears <see cref="_watching"/> when there is nothing left to watch.</summary>
    private void Replace(FdHandle pidfd)
    {
        LogDied(log, _pid ?? 0);
        pidfd.Dispose();
        _pidfd = null;
        var now = Environment.TickCount64;
        _deaths.Add(now);
        _deaths.RemoveAll(t => now - t > (long)RestartWindow.TotalMilliseconds);
        if (_deaths.Count > MaxRestarts)
        {
            _problem = $"lxcfs died {_deaths.Count} times within {RestartWindow.TotalSeconds:0} s; not restarted (see {LogFile})";
            _gaveUp = true;
            LogGaveUp(log, _problem);
            _watching = false;
            return;
        }
        try
        {
            Launch();
            _restarts++;
            _problem = Healthy() ? "" : $"lxcfs at {MountDir} does not answer";
            if (_problem.Length == 0) RemountRunning();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            _problem = $"lxcfs could not be restarted: {e.Message}";
            LogStartFailed(log, e.Message);
            _watching = false;
        }
    }

    /// <summary>Every running container whose spec binds files of <see cref="MountDir"/> gets
    /// them from the new lxcfs. One that cannot (it is exiting, its shim's state is gone) is logged
    /// and left: the others still get theirs.</summary>
    private void RemountRunning()
    {
        if (containers is null) return;
        var prefix = MountDir + "/";
        foreach (var c in containers.All.Where(c => c.State == State.ContainerPhase.Running))
        {
            List<string> files;
            try
            {
                files = [.. (Oci.SpecFile.Load(c.BundleDir).Mounts ?? []).Select(m => m.Source ?? "")
                    .Where(src => src.StartsWith(prefix, StringComparison.Ordinal)).Select(src => src[prefix.Length..])];
            }
            catch (Exception e) when (e is IOException or InvalidDataException or System.Text.Json.JsonException) { continue; }
            if (files.Count == 0) continue;
            if (Shim.Client.ShimClient.ReadStateFile(c.StateDir) is not { Pid: > 0 } state) continue;
            try
            {
                ProcViewRemount.Into(state.Pid, MountDir, files, _kernel);
                LogRemounted(log, c.Id, files.Count);
            }
            catch (IOException e)
            {
                LogRemountFailed(log, c.Id, e.Message);
            }
        }
    }

    /// <summary>Stops supervising; lxcfs itself goes on (see the class summary).</summary>
    public void Dispose()
    {
        _stop.Cancel();
    }

    [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "lxcfs {Pid} serving {Mount}")]
    private static partial void LogStarted(ILogger log, int pid, string mount);
    [LoggerMessage(EventId = 701, Level = LogLevel.Information, Message = "adopted lxcfs {Pid} serving {Mount}")]
    private static partial void LogAdopted(ILogger log, int pid, string mount);
    [LoggerMessage(EventId = 702, Level = LogLevel.Warning, Message = "lxcfs {Pid} exited; starting a new one")]
    private static partial void LogDied(ILogger log, int pid);
    [LoggerMessage(EventId = 703, Level = LogLevel.Warning, Message = "lxcfs: {Message}")]
    private static partial void LogStartFailed(ILogger log, string message);
    [LoggerMessage(EventId = 705, Level = LogLevel.Information, Message = "container {Id}: {Count} partition view files from the new lxcfs")]
    private static partial void LogRemounted(ILogger log, string id, int count);
    [LoggerMessage(EventId = 706, Level = LogLevel.Warning, Message = "container {Id}: the new lxcfs's files could not be put in place: {Message}")]
    private static partial void LogRemountFailed(ILogger log, string id, string message);
    [LoggerMessage(EventId = 704, Level = LogLevel.Error, Message = "{Problem}")]
    private static partial void LogGaveUp(ILogger log, string problem);
}
