using System.Text;
using System.Text.Json;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using CriRuntime.Shim.Supervisor;
using CriRuntime.Interop;

namespace CriRuntime.Shim;

/// <summary>criruntime-shim's commands. `create` is what the daemon runs; `supervise` and
/// `init` are the shim re-executing itself; the others are thin clients of the control socket
/// for people and scripts (the daemon uses <see cref="ShimClient"/> directly).</summary>
public static class ShimCli
{
    private const string Usage = """
        usage:
          criruntime-shim create --id ID --bundle DIR --state DIR --log PATH [--traceparent W3C]
              creates the container, leaves a daemonised shim supervising it, prints
              {"shimPid":N,"pid":N,"phases":[{"name":S,"start":NS,"end":NS},...]} and exits 0
              (1 and a message on stderr on failure)
          criruntime-shim start|state|wait|reopen-log --state DIR
          criruntime-shim kill --state DIR [--signal N]          (default 9)
          criruntime-shim stop --state DIR [--signal N] [--timeout SECONDS]   (default 15, 10)
          criruntime-shim exec --state DIR [--timeout SECONDS] -- ARGS...   (runs ARGS in the container, prints the result)
        internal: criruntime-shim supervise ... (fd 3: readiness), criruntime-shim supervise --resume WHY ...
                  (exec'd by criruntime-monitor), criruntime-shim init --bundle DIR,
                  criruntime-shim exec-init --pid N [--bundle DIR --id ID] (fd 3: sync)
        """;

    public static int Run(string[] args)
    {
        if (args.Length == 0) { Err(Usage); return 2; }
        var dashes = Array.IndexOf(args, "--");
        var command = dashes < 0 ? [] : args[(dashes + 1)..];
        var opts = ParseOptions(dashes < 0 ? args.AsSpan(1) : args.AsSpan(1, dashes - 1));
        if (opts is null) { Err(Usage); return 2; }
        switch (args[0])
        {
            case "init":
                return ContainerInit.Run(Required(opts, "bundle"));
            case "exec-init":
                return ExecInit.Run(int.Parse(Required(opts, "pid"), System.Globalization.CultureInfo.InvariantCulture), opts.GetValueOrDefault("bundle"), opts.GetValueOrDefault("id"));
            case "create":
                HelperPriority.ApplyFromEnvironment(); // as `criruntime-monitor launch` does
                return Create(Required(opts, "id"), Required(opts, "bundle"), Required(opts, "state"), Required(opts, "log"), args[1..]);
            case "supervise" when opts.ContainsKey("resume"):
                return new ContainerSupervisor(Required(opts, "id"), Required(opts, "bundle"), Required(opts, "state"), Required(opts, "log")).Resume(opts);
            case "supervise":
                return Supervise(Required(opts, "id"), Required(opts, "bundle"), Required(opts, "state"), Required(opts, "log"), opts.GetValueOrDefault("traceparent"));
            case ShimOps.Exec:
                return Exec(opts, command);
            case ShimOps.Start or ShimOps.State or ShimOps.Wait or ShimOps.ReopenLog or ShimOps.Kill or ShimOps.Stop:
                return Client(args[0], opts);
            default:
                Err(Usage);
                return 2;
        }
    }

    // Plain write(2)s rather than System.Console: the CLI prints a line or two, and Console's
    // terminal handling would be compiled into (and resident in) every shim.
    private static void Out(string line) => WriteLine(1, line);
    private static void Err(string line) => WriteLine(2, line);

    private static void WriteLine(int fd, string line)
    {
        try { Libc.WriteAll(fd, Encoding.UTF8.GetBytes(line + "\n"), fd == 1 ? "stdout" : "stderr"); }
        catch (KernelException) { } // nobody is listening
    }

    private static Dictionary<string, string>? ParseOptions(ReadOnlySpan<string> args)
    {
        var opts = new Dictionary<string, string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length) return null;
            opts[args[i][2..]] = args[++i];
        }
        return opts;
    }

    private static string Required(Dictionary<string, string> opts, string name) =>
        opts.TryGetValue(name, out var v) && v.Length > 0 ? v : throw new ArgumentException($"--{name} is required");

    /// <summary>Starts `supervise` in a new session with /dev/null stdio (so it holds none of the
    /// caller's pipes) and waits on a pipe for its verdict; the shim lives on after we exit.</summary>
    private static int Create(string id, string bundle, string stateDir, string logPath, string[] rest)
    {
        try
        {
            Directory.CreateDirectory(stateDir);
            if (!File.Exists(Path.Combine(bundle, SpecFile.ConfigName)))
                throw new FileNotFoundException($"{Path.Combine(bundle, SpecFile.ConfigName)}: no such file");
            var (read, write) = Spawn.Pipe();
            using (read)
            {
                using (write)
                {
                    Spawn.Run(Environment.ProcessPath ?? "/proc/self/exe", ["criruntime-shim", "supervise", .. rest],
                        [.. Spawn.CurrentEnvironment(), .. SupervisorTuning.Environment], new Dictionary<int, int> { [0] = -1, [1] = -1, [2] = -1, [3] = write.Fd }, newSession: true);
                }
                var answer = ReadAll(read).Trim();
                if (ShimReport.Parse(answer, out var error) is { } report)
                {
                    Out($"{{\"shimPid\":{report.ShimPid},\"pid\":{report.Pid},\"phases\":{JsonSerializer.Serialize(report.Phases.ToList(), ShimJsonContext.Default.ListShimPhase)}}}");
                    return 0;
                }
                Err(answer.Length > 0
                    ? $"create {id}: {error}"
                    : $"create {id}: the shim exited before reporting; see {Path.Combine(stateDir, StateFiles.ShimLog)}");
                return 1;
            }
        }
        catch (Exception e) when (e is IOException or ArgumentException)
        {
            Err($"create {id}: {e.Message}");
            return 1;
        }
    }

    private static string ReadAll(FdHandle fd)
    {
        var all = new List<byte>();
        var buffer = new byte[512];
        int n;
        while ((n = Libc.ReadSome(fd.Fd, buffer, "readiness pipe")) > 0) all.AddRange(buffer.AsSpan(0, n));
        return Encoding.UTF8.GetString(all.ToArray());
    }

    private static int Supervise(string id, string bundle, string stateDir, string logPath, string? traceParent)
    {
        const int ReadyFd = 3;
        Libc.SetCloexec(ReadyFd, true); // no child of ours may hold the caller's pipe
        var ready = new FdHandle(ReadyFd);
        var supervisor = new ContainerSupervisor(id, bundle, stateDir, logPath, traceParent);
        // Our stdio is /dev/null: a crash must at least leave its reason in shim.log.
        AppDomain.CurrentDomain.UnhandledException += (_, e) =>
            new ShimLog(Path.Combine(stateDir, StateFiles.ShimLog)).Error($"shim crashed: {e.ExceptionObject}");
        return supervisor.Run(message =>
        {
            try { Libc.WriteAll(ready.Fd, Encoding.UTF8.GetBytes(message + "\n"), "readiness pipe"); }
            catch (KernelException) { } // the caller is gone; the container is still ours to run
            ready.Dispose();
        });
    }

    private static int Exec(Dictionary<string, string> opts, string[] command)
    {
        var request = new ShimRequest
        {
            Op = ShimOps.Exec,
            Args = command,
            Timeout = opts.TryGetValue("timeout", out var t) ? double.Parse(t, System.Globalization.CultureInfo.InvariantCulture) : null,
        };
        try
        {
            var response = RawControlClient.Send(Required(opts, "state"), request);
            if (response.Exec is not { } result) { Err($"exec: {response.Error}"); return 126; }
            Libc.WriteAll(1, result.Stdout, "stdout");
            Libc.WriteAll(2, result.Stderr, "stderr");
            return result.ExitCode;
        }
        catch (IOException e)
        {
            Err($"exec: {e.Message}");
            return 126;
        }
    }

    private static int Client(string op, Dictionary<string, string> opts)
    {
        var stateDir = Required(opts, "state");
        var request = new ShimRequest
        {
            Op = op,
            Signal = opts.TryGetValue("signal", out var s) ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : null,
            Timeout = opts.TryGetValue("timeout", out var t) ? double.Parse(t, System.Globalization.CultureInfo.InvariantCulture) : null,
        };
        try
        {
            var response = RawControlClient.SendOrState(stateDir, request);
            Out(JsonSerializer.Serialize(response, ShimJsonContext.Default.ShimResponse));
            return response.Ok ? 0 : 1;
        }
        catch (IOException e)
        {
            Err($"{op}: {e.Message}");
            return 1;
        }
    }
}
