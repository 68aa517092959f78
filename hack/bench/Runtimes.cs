using System.Diagnostics;

namespace CriRuntime.Bench;

/// <summary>A CRI runtime under test: a daemon process on a private socket, root and state dir.</summary>
public abstract class RuntimeUnderTest(string name, string dir) : IAsyncDisposable
{
    private Process? _process;
    private StreamWriter? _log;
    public string Name { get; } = name;
    /// <summary>Private directory: socket, root, state, config.</summary>
    public string Dir { get; } = dir;
    public string Root => Path.Combine(Dir, "root");
    public string State => Path.Combine(Dir, "state");
    public abstract string Socket { get; }
    /// <summary>Pods get this cgroup parent (cgroupfs), so cleanup finds what was left.</summary>
    public string CgroupParent => "/" + BenchDirName(Dir) + "-" + Name;

    /// <summary>The bench's own directory (crbench-*) above <paramref name="dir"/>, however deep a
    /// section put its runtime: BenchEnv's cleanup finds cgroups named after it.</summary>
    private static string BenchDirName(string dir)
    {
        for (var d = Path.GetDirectoryName(dir); d is not null; d = Path.GetDirectoryName(d))
            if (Path.GetFileName(d).StartsWith("crbench-", StringComparison.Ordinal)) return Path.GetFileName(d);
        return Path.GetFileName(Path.GetDirectoryName(dir)!);
    }
    public int DaemonPid => _process?.Id ?? 0;
    public string Version { get; set; } = "";

    /// <summary>Shim processes (one per container for us, one per pod for containerd).</summary>
    public abstract IReadOnlyList<int> ShimPids(List<Procs.Proc> all);
    /// <summary>Per-pod processes that are not the containers' own (containerd's pause).</summary>
    public abstract IReadOnlyList<int> PausePids(List<Procs.Proc> all);

    protected async Task StartProcessAsync(string file, IEnumerable<string> args, string readyText, string logFile)
    {
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        _log = new StreamWriter(logFile) { AutoFlush = true };
        var log = _log;
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        void OnLine(string? line)
        {
            if (line is null) return;
            lock (log) log.WriteLine(line);
            if (line.Contains(readyText, StringComparison.Ordinal)) ready.TrySetResult();
        }
        p.OutputDataReceived += (_, e) => OnLine(e.Data);
        p.ErrorDataReceived += (_, e) => OnLine(e.Data);
        p.Exited += (_, _) => ready.TrySetException(new InvalidOperationException($"{Name} exited early; see {logFile}"));
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }

    /// <summary>SIGTERM, then SIGKILL after 30 s.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            Procs.Signal(p.Id, 15);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try { await p.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { p.Kill(entireProcessTree: true); await p.WaitForExitAsync(); }
        }
        _process?.Dispose();
        _process = null;
        if (_log is not null) { lock (_log) _log.Dispose(); }
        GC.SuppressFinalize(this);
    }
}

/// <summary>Our daemon, `criruntime serve`, from the build under test.</summary>
/// <param name="name">"criruntime" for the run's shared daemon; a section that starts daemons of
/// its own (another config) names them apart, which also gives them a cgroup parent of their own.</param>
/// <param name="extraConfig">TOML appended to the config, e.g. a `[metrics]` table.</param>
public sealed class OurRuntime(string dir, string binary, string cniConfDir, string name = "criruntime", string extraConfig = "") : RuntimeUnderTest(name, dir)
{
    public override string Socket => Path.Combine(State, "criruntime.sock");
    public string Binary { get; } = binary;

    public Task StartAsync(string logFile)
    {
        Directory.CreateDirectory(Dir);
        var config = Path.Combine(Dir, "config.toml");
        File.WriteAllText(config, $"""
            [runtime]
            cgroup_root = "{CgroupParent.TrimStart('/')}"
            [cni]
            conf_dir = "{cniConfDir}"
            bin_dirs = ["/usr/lib/cni"]
            """ + "\n" + extraConfig);
        return StartProcessAsync(Binary, ["serve", "--config", config, "--socket", Socket, "--root", Root, "--state", State, "--log-level", Environment.GetEnvironmentVariable("CRIRUNTIME_BENCH_LOG_LEVEL") ?? "debug"],
            "serving CRI on", logFile);
    }

    /// <summary>Our shims: the .NET supervisor, or the C monitor it execs into while its container
    /// runs idle (comm is cut to 15 bytes: "criruntime-moni").</summary>
    public override IReadOnlyList<int> ShimPids(List<Procs.Proc> all) =>
        [.. all.Where(p => p.Comm is "criruntime-shim" or "criruntime-moni" && p.Cmdline.Contains(Dir, StringComparison.Ordinal)).Select(p => p.Pid)];

    public override IReadOnlyList<int> PausePids(List<Procs.Proc> all) => [];
}

/// <summary>Debian's containerd 1.6 with its CRI plugin, runc through the runc v2 shim.</summary>
public sealed class Containerd(string dir, string cniConfDir, string registryHost, string sandboxImage) : RuntimeUnderTest("containerd", dir)
{
    public override string Socket => Path.Combine(State, "containerd.sock");
    public string RuncRoot => Path.Combine(State, "runc");

    public Task StartAsync(string logFile)
    {
        Directory.CreateDirectory(Dir);
        // Plain http to the local registry through a hosts.toml (config_path), the 1.6 way.
        var hosts = Path.Combine(Dir, "certs.d", registryHost);
        Directory.CreateDirectory(hosts);
        File.WriteAllText(Path.Combine(hosts, "hosts.toml"), $"""
            server = "http://{registryHost}"
            [host."http://{registryHost}"]
              capabilities = ["pull", "resolve"]
            """);
        var config = Path.Combine(Dir, "config.toml");
        File.WriteAllText(config, $"""
            version = 2
            root = "{Root}"
            state = "{State}"
            [grpc]
              address = "{Socket}"
            [ttrpc]
              address = "{Socket}.ttrpc"
            [debug]
              level = "info"
            [metrics]
              address = ""
            [plugins."io.containerd.grpc.v1.cri"]
              sandbox_image = "{sandboxImage}"
              # This machine refuses negative oom_score_adj (no CAP_SYS_RESOURCE).
              restrict_oom_score_adj = true
              stream_server_address = "127.0.0.1"
              stream_server_port = "0"
              [plugins."io.containerd.grpc.v1.cri".containerd]
                snapshotter = "overlayfs"
                default_runtime_name = "runc"
                [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
                  runtime_type = "io.containerd.runc.v2"
                  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                    SystemdCgroup = false
                    Root = "{RuncRoot}"
              [plugins."io.containerd.grpc.v1.cri".cni]
                bin_dir = "/usr/lib/cni"
                conf_dir = "{cniConfDir}"
              [plugins."io.containerd.grpc.v1.cri".registry]
                config_path = "{Path.Combine(Dir, "certs.d")}"
            """);
        return StartProcessAsync("/usr/bin/containerd", ["--config", config], "containerd successfully booted", logFile);
    }

    public override IReadOnlyList<int> ShimPids(List<Procs.Proc> all) =>
        [.. all.Where(p => p.Comm.StartsWith("containerd-shim", StringComparison.Ordinal) && p.Cmdline.Contains(Socket, StringComparison.Ordinal)).Select(p => p.Pid)];

    public override IReadOnlyList<int> PausePids(List<Procs.Proc> all)
    {
        var shims = ShimPids(all).ToHashSet();
        return [.. all.Where(p => p.Comm == "pause" && shims.Contains(p.PPid)).Select(p => p.Pid)];
    }
}
