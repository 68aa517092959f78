using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>The real criruntime daemon as a child process, with its own temporary socket, root,
/// state and config directory. Dispose stops it and asserts that nothing was left behind.</summary>
public sealed class DaemonProcess : IDisposable
{
    private Process? _process;
    private readonly StringBuilder _output = new();
    private readonly Lock _outputLock = new();

    public string Dir { get; }
    public string Socket => Path.Combine(Dir, "run", "criruntime.sock");
    public string Root => Path.Combine(Dir, "root");
    public string State => Path.Combine(Dir, "run");
    public string ConfigFile => Path.Combine(Dir, "etc", "config.toml");
    public string DropInDir => Path.Combine(Dir, "etc", "conf.d");
    public string CniConfDir => Path.Combine(Dir, "etc", "cni");
    public int Pid => _process?.Id ?? 0;
    /// <summary>A network namespace (pinned file) the daemon runs in, entered by nsenter before it
    /// execs the daemon (the same pid): a node of its own network (Migration/NodeNetwork). Null:
    /// the test's network namespace.</summary>
    public string? NetNs { get; set; }
    /// <summary>Extra environment of the next start (e.g. CRIRUNTIME_FAULT for crash tests).</summary>
    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);
    public string Output { get { lock (_outputLock) return _output.ToString(); } }

    /// <summary>The daemon of the test whose code is running (it flows with the test's awaits).</summary>
    private static readonly AsyncLocal<DaemonProcess?> CurrentTest = new();
    /// <summary>The first assertion that failed in this daemon's test: Dispose's leak report,
    /// which replaces the test's own exception when the failure skipped its teardown, names it.</summary>
    private Exception? _testFailure;

    private void OnFirstChance(object? sender, System.Runtime.ExceptionServices.FirstChanceExceptionEventArgs e)
    {
        if (e.Exception is Xunit.Sdk.XunitException && ReferenceEquals(CurrentTest.Value, this))
            Interlocked.CompareExchange(ref _testFailure, e.Exception, null);
    }

    public DaemonProcess(string? configToml = null)
    {
        CurrentTest.Value = this;
        AppDomain.CurrentDomain.FirstChanceException += OnFirstChance;
        Dir = Directory.CreateTempSubdirectory("criruntime-e2e-").FullName;
        Directory.CreateDirectory(DropInDir);
        Directory.CreateDirectory(CniConfDir);
        // Every test daemon gets its own CNI config dir so the host's is never read or written.
        // The cgroup root carries the test directory's name, so the leak check finds any cgroup left.
        File.WriteAllText(ConfigFile, configToml ?? $"[cni]\nconf_dir = \"{CniConfDir}\"\n[runtime]\ncgroup_root = \"{Path.GetFileName(Dir)}\"\n");
    }

    /// <summary>Starts the daemon and waits until it logs that it serves (an event, not a sleep).</summary>
    public async Task StartAsync(params string[] extraArgs)
    {
        if (_process is { HasExited: false }) throw new InvalidOperationException("daemon already running");
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var psi = new ProcessStartInfo(NetNs is null ? Repo.Daemon : "nsenter")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (NetNs is not null)
            foreach (var a in new[] { $"--net={NetNs}", "--", Repo.Daemon }) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "serve", "--config", ConfigFile, "--socket", Socket, "--root", Root, "--state", State, "--log-level", "debug" }.Concat(extraArgs))
            psi.ArgumentList.Add(a);
        foreach (var (k, v) in Environment) psi.Environment[k] = v;
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        void OnLine(string? line)
        {
            if (line is null) return;
            lock (_outputLock)
            {
                _output.AppendLine(line);
                foreach (var w in _waiters.Where(w => line.Contains(w.Text, StringComparison.Ordinal)).ToList())
                {
                    _waiters.Remove(w);
                    w.Seen.TrySetResult();
                }
            }
            if (line.Contains("serving CRI on", StringComparison.Ordinal)) ready.TrySetResult();
        }
        p.OutputDataReceived += (_, e) => OnLine(e.Data);
        p.ErrorDataReceived += (_, e) => OnLine(e.Data);
        p.Exited += (_, _) => ready.TrySetException(new InvalidOperationException($"daemon exited early:\n{Output}"));
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }

    public CriClient Client() => new(Socket);

    private readonly List<(string Text, TaskCompletionSource Seen)> _waiters = [];

    /// <summary>Returns once the daemon has written a line containing <paramref name="text"/>
    /// (already, or from now on): an event, not polling.</summary>
    public Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_outputLock)
        {
            if (_output.ToString().Contains(text, StringComparison.Ordinal)) return Task.CompletedTask;
            _waiters.Add((text, seen));
        }
        return seen.Task.WaitAsync(timeout);
    }

    /// <summary>SIGTERM, then wait for a clean exit.</summary>
    public async Task StopAsync()
    {
        if (_process is null || _process.HasExited) return;
        _ = ProcState.Signal(_process.Id, ProcState.SigTerm);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _process.WaitForExitAsync(cts.Token);
    }

    /// <summary>Sends <paramref name="signal"/> to the daemon (e.g. 1, SIGHUP: reload the config).</summary>
    public void Signal(int signal)
    {
        if (_process is null || _process.HasExited) throw new InvalidOperationException("daemon not running");
        if (ProcState.Signal(_process.Id, signal) != 0) throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>kill -9: the daemon gets no chance to clean up.</summary>
    public async Task KillAsync()
    {
        if (_process is null || _process.HasExited) return;
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    /// <summary>Waits for the daemon to die on its own (a fault point killed it).</summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        if (_process is null) return;
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
    }

    public async Task RestartAsync()
    {
        await StopAsync();
        await StartAsync();
    }

    public int? ExitCode => _process is { HasExited: true } p ? p.ExitCode : null;

    /// <summary>Runs `criruntime ARGS` to completion (config printing, refused starts).</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunCliAsync(params string[] args)
    {
        var psi = new ProcessStartInfo(Repo.Daemon) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await stdout, await stderr);
    }

    public void Dispose()
    {
        AppDomain.CurrentDomain.FirstChanceException -= OnFirstChance;
        try
        {
            StopAsync().GetAwaiter().GetResult();
        }
        finally
        {
            if (_process is { HasExited: false }) _process.Kill(entireProcessTree: true);
            _process?.Dispose();
        }
        StopLxcfs();
        // The daemon's cgroup root (named after this test) is a shared parent it keeps; remove it
        // when empty. Anything below it is a leak and makes rmdir fail, so the check still sees it.
        Leaks.RemoveEmptyCgroupRoot(Path.GetFileName(Dir));
        try
        {
            if (System.Environment.GetEnvironmentVariable("E2E_NO_LEAKCHECK") is null) Leaks.AssertNone(Dir);
        }
        catch (Xunit.Sdk.XunitException e)
        {
            // This raises from Dispose, so it hides the test body's own error, if any: it is
            // named first, and the daemon's last lines say what it was doing.
            var lines = Output.Split('\n');
            var failure = _testFailure is { } f ? $"the test failed before its teardown: {f.Message}\n{f.StackTrace}\n---- and so ----\n" : "";
            throw new Xunit.Sdk.XunitException($"{failure}{e.Message}\n---- the daemon's last {Math.Min(80, lines.Length)} lines ----\n{string.Join('\n', lines.TakeLast(80))}{HelperLogs()}");
        }
        finally
        {
            // Whatever leaked is still cleaned up, so one failure does not spill into the next test.
            Leaks.CleanUp(Dir);
            try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>For a leak report or a failed session: the last lines of every shim's log and of
    /// the stream server's, which the daemon's own output does not show.</summary>
    public string HelperLogs()
    {
        var sb = new System.Text.StringBuilder();
        var logs = Directory.Exists(Path.Combine(State, "c"))
            ? Directory.EnumerateDirectories(Path.Combine(State, "c")).Select(d => Path.Combine(d, "shim.log"))
            : [];
        foreach (var log in logs.Append(Path.Combine(State, "stream-server.log")).Where(File.Exists))
        {
            try
            {
                var lines = File.ReadAllLines(log);
                sb.Append($"\n---- {log}: last {Math.Min(30, lines.Length)} lines ----\n").AppendJoin('\n', lines.TakeLast(30));
            }
            catch (IOException) { }
        }
        return sb.ToString();
    }

    /// <summary>The daemon leaves its lxcfs running when it stops, by design (containers keep
    /// reading it; the next daemon adopts it: docs/partition-view.md). The test is the operator
    /// here: it stops it, as a node's shutdown would (SIGTERM: lxcfs unmounts itself).</summary>
    private void StopLxcfs()
    {
        var pidFile = Path.Combine(State, "lxcfs.pid");
        if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid)) return;
        try
        {
            if (!File.ReadAllText($"/proc/{pid}/cmdline").Contains(Dir, StringComparison.Ordinal)) return;
            using var p = Process.GetProcessById(pid);
            ProcState.Signal(pid, ProcState.SigTerm);
            if (!p.WaitForExit(TimeSpan.FromSeconds(10))) p.Kill();
            p.WaitForExit();
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidOperationException) { } // already gone
    }

    /// <summary>A container's shim and init pids, as its shim wrote them in its state dir
    /// (shim.pid, container.pid).</summary>
    public (int Shim, int Container) ContainerPids(string id) => (ShimPid(id), ReadPid(id, "container.pid"));

    /// <summary>A container's shim pid (once idle the same process is the monitor).</summary>
    public int ShimPid(string id) => ReadPid(id, "shim.pid");

    private int ReadPid(string id, string file) =>
        int.Parse(File.ReadAllText(Path.Combine(State, "c", id[..20], file)).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The container's cgroup directories below this daemon's cgroup root (named after its
    /// directory) and a pod's, in every v1 hierarchy and on the cgroup2 mount or root.</summary>
    public List<string> ContainerCgroups(string id) =>
        [.. Directory.EnumerateDirectories("/sys/fs/cgroup").Append("/sys/fs/cgroup")
            .Select(h => Path.Combine(h, Path.GetFileName(Dir)))
            .Where(Directory.Exists)
            .SelectMany(root => Directory.EnumerateDirectories(root))
            .Select(pod => Path.Combine(pod, id))
            .Where(Directory.Exists)];
}
