using System.Diagnostics;
using CriRuntime.Config;
using CriRuntime.Errors;

namespace CriRuntime.Checkpoint;

/// <summary>What Status verbose info reports about CRIU: where it is, its version and whether
/// `criu check` passed (with the configured environment).</summary>
public sealed record CriuInfo(string Path, string Version, bool CheckOk, string Check);

/// <summary>The criu binary, run as a child process with the configured environment
/// ([checkpoint] criu_env). CRIU is exec-based by design; every call has a deadline, after which
/// CRIU and whatever it forked are killed: a dump that waits on a ptrace event that never comes
/// (hardware breakpoints in some VMs) must not hang the RPC.</summary>
public sealed class Criu(CheckpointSection config)
{
    /// <summary>Where hack/criu.sh installs it.</summary>
    public const string InstalledPath = "/usr/local/sbin/criu";

    private Task<CriuInfo>? _info;

    /// <summary>The nice value CRIU runs at (<see cref="Start"/>).</summary>
    public const int CriuNice = -10;

    /// <summary>util-linux's setsid (Debian: essential).</summary>
    private const string Setsid = "/usr/bin/setsid";
    private static readonly bool UseSetsid = File.Exists(Setsid);

    /// <summary>Where the CRIU that hack/criu.sh builds keeps its cache of kernel probes (its
    /// RUNDIR: criu.kdat there). CRIU probes the kernel's features at every start (60 ms on a
    /// quiet node here, 200 ms and more under load: a `criu lazy-pages` and a `criu restore` each
    /// do it inside a lazy migration's downtime) unless it finds the cache, which it writes only on
    /// a tmpfs, so that a reboot into another kernel cannot find a stale one. Its default, /run, is
    /// a tmpfs on a usual Debian node but not on every machine (not on ours); /dev/shm is one
    /// everywhere, but anyone may write there, so the cache lives in a directory of root's own,
    /// which <see cref="PrepareProbeCache"/> makes. A CRIU built with another RUNDIR (Debian's:
    /// /run) never looks here and keeps its own behaviour.</summary>
    public const string ProbeCacheDir = "/dev/shm/criruntime-criu";

    /// <summary>At start: <paramref name="dir"/> is made a directory that only root can write
    /// (mode 0700): a CRIU running as root reads its kernel probes from there, so a directory that
    /// someone else made first (or a symlink, or a file) is replaced, and anything inside it that
    /// root did not write is gone; a half-written cache is removed. Returns why it could not be
    /// made so, or null.</summary>
    public static string? PrepareProbeCache(string dir = ProbeCacheDir)
    {
        const UnixFileMode Owner = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        try
        {
            static bool RootsOwn((uint Mode, uint Uid) st) => (st.Mode & Interop.Libc.S_IFMT) == Interop.Libc.S_IFDIR && st.Uid == 0 && (st.Mode & 0x3F) == 0;
            if (Interop.Libc.StatOwner(dir) is { } st && !RootsOwn(st))
            {
                // Not root's own: whatever another user put there must not reach CRIU.
                if ((st.Mode & Interop.Libc.S_IFMT) == Interop.Libc.S_IFDIR) Directory.Delete(dir, recursive: true); // links inside are removed, not followed
                else File.Delete(dir);
            }
            Directory.CreateDirectory(dir, Owner);
            // Left by a CRIU killed while writing the cache: CRIU creates it O_EXCL, so no later
            // run would write the cache again. (At start: the previous daemon's CRIUs are gone.)
            File.Delete(Path.Combine(dir, "criu.kdat.tmp"));
            return Interop.Libc.StatOwner(dir) is { } made && RootsOwn(made)
                ? null : $"{dir} is not a directory of root's own with mode 0700 (someone else made it meanwhile)";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{dir}: {e.Message}";
        }
    }

    /// <summary>ROOT/checkpoints: one scratch directory per checkpoint in progress.</summary>
    public static string ScratchRoot(string root) => System.IO.Path.Combine(root, "checkpoints");

    /// <summary>At start: a scratch directory left by an earlier daemon means a checkpoint it did
    /// not finish. Its CRIU, if still there (it was our child, not killed with us), is killed with
    /// whatever it forked: a dump that waits forever would keep the container stopped under
    /// ptrace; killing the tracer releases it. CRIU is found by its command line, which names its
    /// images and work directories inside the scratch directory: no pid file that the daemon may
    /// have been killed before writing.</summary>
    public static int RemoveLeftovers(string scratchRoot)
    {
        if (!Directory.Exists(scratchRoot)) return 0;
        var dirs = Directory.GetDirectories(scratchRoot);
        var killed = 0;
        if (dirs.Length > 0)
        {
            foreach (var pid in ProcessesUnder(scratchRoot))
            {
                try
                {
                    using var p = Process.GetProcessById(pid);
                    p.Kill(entireProcessTree: true);
                    p.WaitForExit();
                    killed++;
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException) { } // already gone
            }
        }
        foreach (var dir in dirs) Directory.Delete(dir, recursive: true);
        return killed;
    }

    /// <summary>Processes with an argument naming a path inside <paramref name="root"/>.</summary>
    private static List<int> ProcessesUnder(string root)
    {
        var prefix = root.TrimEnd('/') + "/";
        var pids = new List<int>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(System.IO.Path.GetFileName(entry), out var pid) || pid == Environment.ProcessId) continue;
            string cmdline;
            try { cmdline = File.ReadAllText(System.IO.Path.Combine(entry, "cmdline")); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (cmdline.Split('\0').Any(a => a.StartsWith(prefix, StringComparison.Ordinal))) pids.Add(pid);
        }
        return pids;
    }

    /// <summary>criu_path, else criu on the PATH, else <see cref="InstalledPath"/>; null when none exists.</summary>
    public string? Find()
    {
        if (config.CriuPath.Length > 0) return File.Exists(config.CriuPath) ? config.CriuPath : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var p = System.IO.Path.Combine(dir, "criu");
            if (File.Exists(p)) return p;
        }
        return File.Exists(InstalledPath) ? InstalledPath : null;
    }

    /// <summary>The binary, or FailedPrecondition saying how to get one.</summary>
    public string Require() => Find() ?? throw Fail.FailedPrecondition(
        config.CriuPath.Length > 0
            ? $"checkpoint.criu_path {config.CriuPath} not found"
            : $"criu not found on the PATH nor at {InstalledPath} (hack/criu.sh installs it; or set checkpoint.criu_path)");

    /// <summary>Version and `criu check`, asked once per daemon (criu check re-probes the kernel
    /// on every call where /run is no tmpfs).</summary>
    public Task<CriuInfo> InfoAsync() => _info ??= ProbeAsync();

    private async Task<CriuInfo> ProbeAsync()
    {
        if (Find() is not { } bin) return new CriuInfo("", "", false, "criu not found");
        var version = await RunAsync(bin, ["--version"], TimeSpan.FromSeconds(10), null, CancellationToken.None);
        var check = await RunAsync(bin, ["check"], TimeSpan.FromSeconds(30), null, CancellationToken.None);
        var v = version.Output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("Version:", StringComparison.Ordinal))?["Version:".Length..].Trim() ?? "";
        return new CriuInfo(bin, v, check.ExitCode == 0, check.Output.Trim());
    }

    /// <summary>Runs criu with <paramref name="args"/>; kills it (and its children) when
    /// <paramref name="timeout"/> passes or <paramref name="ct"/> fires.</summary>
    public async Task<CriuResult> RunAsync(string bin, IReadOnlyList<string> args, TimeSpan timeout, string? workDir, CancellationToken ct)
    {
        using var p = Start(bin, args, workDir);
        var stdout = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
        return await WaitAsync(p, stdout, timeout, ct);
    }

    /// <summary>Starts a criu that serves after it is ready (`criu lazy-pages`), with
    /// <c>--status-fd 1</c> added: CRIU writes a NUL to its stdout and closes it once it listens.
    /// Returns when it did, with the task of its exit (killed when <paramref name="timeout"/>
    /// passes or <paramref name="ct"/> fires); FailedPrecondition with its output when it exited
    /// before.</summary>
    public async Task<Task<CriuResult>> StartReadyAsync(string bin, IReadOnlyList<string> args, TimeSpan timeout, string? workDir, CancellationToken ct)
    {
        var p = Start(bin, [.. args, "--status-fd", "1"], workDir);
        var stdout = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
        // The NUL, or the end of stdout (CRIU failed, or closed it without one).
        var status = await stdout.WaitAsync(timeout, ct).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : null, TaskScheduler.Default);
        var exited = WaitAsync(p, stdout, timeout, ct).ContinueWith(t => { p.Dispose(); return t.Result; }, TaskScheduler.Default);
        if (status is not null && status.Contains('\0', StringComparison.Ordinal) && !p.HasExited) return exited;
        var result = await exited;
        if (status is not null && status.Contains('\0', StringComparison.Ordinal) && result.ExitCode == 0) return Task.FromResult(result);
        throw Fail.FailedPrecondition($"criu {args[0]} did not get ready (exit {result.ExitCode}{(result.TimedOut ? ", timed out" : "")}): {result.Output.Trim()}");
    }

    private Process Start(string bin, IReadOnlyList<string> args, string? workDir)
    {
        // In a process group of its own (setsid(1) execs criu with the same pid): a timeout kills
        // the group, which takes every process criu forked, also one forked after the kill looked
        // for criu's children. Seen here: a kernel-probe child of a criu killed 70 ms in was left
        // stopped (state T) for good, holding criu's output pipes.
        var setsid = UseSetsid ? Setsid : null;
        var psi = new ProcessStartInfo(setsid ?? bin)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workDir ?? "/",
        };
        if (setsid is not null) psi.ArgumentList.Add(bin);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var e in config.CriuEnv)
        {
            var eq = e.IndexOf('=');
            psi.Environment[e[..eq]] = e[(eq + 1)..];
        }
        var p = Process.Start(psi) ?? throw Fail.Unavailable($"cannot start {bin}");
        // CRIU runs while a container is frozen (dump), restoring (restore) or waiting for its
        // pages (lazy-pages): ahead of the node's other work, as the image streamer's thread is
        // (nice -10; best effort: needs CAP_SYS_NICE). setsid execs criu in this same process, and
        // what criu forks inherits it.
        _ = Interop.Libc.Setpriority(Interop.Libc.PRIO_PROCESS, (uint)p.Id, CriuNice);
        p.StandardInput.Close();
        return p;
    }

    private static async Task<CriuResult> WaitAsync(Process p, Task<string> stdout, TimeSpan timeout, CancellationToken ct)
    {
        var stderr = p.StandardError.ReadToEndAsync(CancellationToken.None);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        var sw = Stopwatch.StartNew();
        try
        {
            await p.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            if (UseSetsid) Interop.Libc.Kill(-p.Id, Interop.Libc.SIGKILL);
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            await p.WaitForExitAsync(CancellationToken.None);
            return new CriuResult(-1, await OutputAsync(p, stdout, stderr), sw.Elapsed, TimedOut: true);
        }
        return new CriuResult(p.ExitCode, await OutputAsync(p, stdout, stderr), sw.Elapsed, TimedOut: false);
    }

    /// <summary>How long, once criu has exited, its output may take to end. A process criu started
    /// (its action script, one forked after the kill took the tree) holds the pipes as long as it
    /// lives; the answer must not wait for that, or the caller's cleanup (which ends the script)
    /// never runs.</summary>
    private static readonly TimeSpan OutputGrace = TimeSpan.FromSeconds(5);

    private static async Task<string> OutputAsync(Process p, Task<string> stdout, Task<string> stderr)
    {
        var both = Task.WhenAll(stdout, stderr);
        if (await Task.WhenAny(both, Task.Delay(OutputGrace)) == both) return (await stdout) + (await stderr);
        // Closing our ends ends the reads; whatever was read so far is lost with them.
        _ = both.ContinueWith(t => _ = t.Exception, TaskScheduler.Default); // observed: the reads fail now
        p.StandardOutput.Close();
        p.StandardError.Close();
        return $"(criu exited with status {p.ExitCode}, but a process it started still holds its output pipes; output not collected)";
    }

    /// <summary>What to quote of a failed dump: the last three "Error" lines of the dump.log in
    /// <paramref name="scratch"/> (its last three lines when none says Error), else the last three
    /// lines of CRIU's <paramref name="output"/>; ": "-prefixed, or empty when there is nothing.</summary>
    public static string LogTail(string scratch, string output)
    {
        var log = Path.Combine(scratch, "dump.log");
        try
        {
            if (File.Exists(log))
            {
                var all = File.ReadAllLines(log);
                var lines = all.Where(l => l.Contains("Error", StringComparison.Ordinal)).TakeLast(3).ToList();
                if (lines.Count == 0) lines = [.. all.TakeLast(3)];
                return ": " + string.Join(" | ", lines.Select(l => l.Trim()));
            }
        }
        catch (IOException) { } // gone with its scratch directory: the output then
        return output.Trim().Length > 0 ? ": " + string.Join(" | ", output.Trim().Split('\n').TakeLast(3).Select(l => l.Trim())) : "";
    }
}

public sealed record CriuResult(int ExitCode, string Output, TimeSpan Elapsed, bool TimedOut);
