using System.Diagnostics;
using System.Net.Sockets;
using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Shim.Client;
using CriRuntime.Telemetry;

namespace CriRuntime.Containers;

/// <summary>The container lifecycle as the container controller drives it through a shim: create
/// (set up, waiting for start), start, stop, kill, wait for the exit, state. <see cref="ShimRunner"/>
/// is the real one; unit tests use a fake.</summary>
public interface IShimRunner
{
    /// <param name="step">Told the shim's own steps as it timed them (name, milliseconds): StepTimes.</param>
    Task<(int ShimPid, int Pid)> CreateAsync(string id, string bundle, string stateDir, string logPath, string handler, CancellationToken ct, Action<string, double>? step = null);
    Task<ShimState> StartAsync(string stateDir, CancellationToken ct, Action<string, double>? step = null);
    Task StopAsync(string stateDir, int signal, TimeSpan timeout, CancellationToken ct);
    Task KillAsync(string stateDir, int signal, CancellationToken ct);
    Task<ShimState> WaitAsync(string id, string stateDir, CancellationToken ct);
    Task<ShimState> StateAsync(string id, string stateDir, CancellationToken ct);
    /// <summary>Whether the shim of <paramref name="stateDir"/> still answers (its control socket is live).</summary>
    bool IsAlive(string stateDir);
}

/// <summary>The daemon's side of the per-container shims: starting one (`criruntime-monitor launch`)
/// and talking to it over its control socket. A shim that is gone has left its last state in
/// state.json; that is what is reported then.</summary>
public sealed partial class ShimRunner(CriRuntimeConfig config, Metrics.RuntimeMetrics? metrics = null, ILogger<ShimRunner>? log = null) : IShimRunner
{
    /// <summary>How long a shim has to answer, beyond what the request itself takes (a stop's
    /// grace period, an exec's timeout): runtime.shim_answer_timeout.</summary>
    private readonly TimeSpan _answerTimeout = config.Runtime.ShimAnswerTimeout;

    public bool IsAlive(string stateDir) => ShimClient.IsShimAlive(stateDir);

    public string ShimPath { get; } = Resolve(config.Runtime.ShimPath);

    /// <summary>The shim of a runtime handler ("" and "criruntime" are the default).</summary>
    public string ShimPathFor(string handler) =>
        config.Runtime.Handlers.TryGetValue(handler, out var h) && h.ShimPath.Length > 0 ? h.ShimPath : ShimPath;

    private static string Resolve(string configured)
    {
        if (configured.Length > 0) return configured;
        return Path.Combine(AppContext.BaseDirectory, "criruntime-shim");
    }

    /// <summary>`criruntime-monitor` beside the shim, found as the shim finds it
    /// (<see cref="MonitorBinary"/>): its `launch` starts a shim without a second .NET runtime
    /// start on the way; without it (`CRIRUNTIME_MONITOR=off`, or not installed)
    /// `criruntime-shim create` does the same.</summary>
    public string? LauncherPath { get; } = MonitorBinary.Find(Resolve(config.Runtime.ShimPath));

    /// <summary>Creates the container; returns once its init is set up and waiting for start.
    /// The launcher (or `create`) starts `supervise` in a session of its own and exits once it
    /// has the shim's readiness report (docs/shim-protocol.md, "Create").</summary>
    public async Task<(int ShimPid, int Pid)> CreateAsync(string id, string bundle, string stateDir, string logPath, string handler, CancellationToken ct, Action<string, double>? step = null)
    {
        var launched = ShimPhase.Now();
        var shimPath = ShimPathFor(handler);
        if (!File.Exists(shimPath))
            throw Fail.FailedPrecondition($"shim binary {shimPath} of runtime handler '{handler}' not found (build it, or set runtime.shim_path / runtime.handlers.NAME.shim_path)");
        var launcher = LauncherPath;
        var psi = new ProcessStartInfo(launcher ?? shimPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (launcher is not null)
        {
            psi.ArgumentList.Add("launch");
            psi.ArgumentList.Add(shimPath);
            // What `create` gives `supervise` (SupervisorTuning); the launcher passes its environment on.
            foreach (var e in SupervisorTuning.Environment)
                psi.Environment[e[..e.IndexOf('=')]] = e[(e.IndexOf('=') + 1)..];
        }
        else psi.ArgumentList.Add("create");
        // The shim, its container's init, its execs and the monitor take the cgroup layout from us
        // rather than each read /proc/self/mountinfo (CgroupLayout.MountsVariable).
        psi.Environment[Cgroups.CgroupLayout.MountsVariable] = Cgroups.CgroupManagers.Layout.MountLines;
        // The launcher and the shim's set-up run at the helpers' nice, then back at ours (HelperPriority).
        var nice = HelperPriority.Current();
        psi.Environment[HelperPriority.Variable] = HelperPriority.For(nice).ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment[HelperPriority.BaseVariable] = nice.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var a in new[] { "--id", id, "--bundle", bundle, "--state", stateDir, "--log", logPath })
            psi.ArgumentList.Add(a);
        var ok = false;
        using var span = Tracing.Start("shim create");
        span?.SetTag("container.id", id);
        if (span is not null) { psi.ArgumentList.Add("--traceparent"); psi.ArgumentList.Add(span.Id!); }
        try
        {
            using var p = Process.Start(psi) ?? throw Fail.Unavailable($"cannot start {psi.FileName}");
            var stdout = p.StandardOutput.ReadToEndAsync(ct);
            var stderr = p.StandardError.ReadToEndAsync(ct);
            await p.WaitForExitAsync(ct);
            if (p.ExitCode != 0)
                throw Fail.FailedPrecondition($"create container {id}: {(await stderr).Trim()}{(launcher is null ? "" : $"; see {Path.Combine(stateDir, StateFiles.ShimLog)}")}");
            var (pids, phases) = launcher is null ? ParseCreate(await stdout) : ParseReport(id, await stdout);
            if (phases.Count > 0)
            {
                RecordPhases(span, phases);
                // Before its first step: the launcher and `supervise` started (two processes);
                // after its last: the shim's readiness report, and the launcher passing it on and exiting.
                step?.Invoke("shim.launch", Ms(phases[0].Start - launched));
                ReportSteps(phases, step);
                step?.Invoke("shim.report", Ms(ShimPhase.Now() - phases[^1].End));
            }
            ok = true;
            return pids;
        }
        catch (Exception e) when (span.Failed(e))
        {
            throw; // not reached: Failed only marks the span
        }
        finally
        {
            metrics?.ShimStart(ok);
        }
    }

    /// <summary>The launcher's output: the shim's report as it wrote it.</summary>
    private static ((int, int) Pids, IReadOnlyList<ShimPhase> Phases) ParseReport(string id, string output) =>
        ShimReport.Parse(output, out var error) is { } report
            ? ((report.ShimPid, report.Pid), report.Phases)
            : throw Fail.FailedPrecondition($"create container {id}: {error}");

    /// <summary>`create`'s output: the report as JSON.</summary>
    private static ((int, int) Pids, IReadOnlyList<ShimPhase> Phases) ParseCreate(string output)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        var pids = (doc.RootElement.GetProperty("shimPid").GetInt32(), doc.RootElement.GetProperty("pid").GetInt32());
        var phases = doc.RootElement.TryGetProperty("phases", out var list)
            ? System.Text.Json.JsonSerializer.Deserialize(list, ShimJsonContext.Default.ListShimPhase) ?? []
            : [];
        return (pids, phases);
    }

    public async Task<ShimState> StartAsync(string stateDir, CancellationToken ct, Action<string, double>? step = null)
    {
        using var span = Tracing.Start("shim start");
        var r = await SendAsync(stateDir, new ShimRequest { Op = ShimOps.Start, TraceParent = span?.Id }, ct);
        RecordPhases(span, r.Phases);
        ReportSteps(r.Phases, step);
        if (!r.Ok)
        {
            span?.SetStatus(ActivityStatusCode.Error, r.Error);
            throw Fail.FailedPrecondition($"start: {r.Error}");
        }
        return r.State!;
    }

    private static void ReportSteps(IReadOnlyList<ShimPhase>? phases, Action<string, double>? step)
    {
        if (step is null) return;
        foreach (var p in phases ?? []) step(p.Name, Ms(p.End - p.Start));
    }

    private static double Ms(long nanos) => nanos / 1e6;

    /// <summary>The shim's own timings (it carries no tracing SDK) as child spans of the daemon's.</summary>
    private static void RecordPhases(Activity? span, IReadOnlyList<ShimPhase>? phases)
    {
        foreach (var p in phases ?? [])
            span.Record(p.Name, ShimPhase.ToTime(p.Start), ShimPhase.ToTime(p.End));
    }

    /// <summary>The stop signal, SIGKILL after <paramref name="timeout"/>; returns once exited. A
    /// shim that does not answer in time (hung, or stopped) is killed: its container was to die
    /// anyway, and dies with it (its init has PR_SET_PDEATHSIG=SIGKILL; what else ran in its cgroup
    /// is killed when the exit is recorded). The exit is then the shim's death (exit 255).</summary>
    public async Task StopAsync(string stateDir, int signal, TimeSpan timeout, CancellationToken ct)
    {
        try
        {
            await AskAsync(stateDir, new ShimRequest { Op = ShimOps.Stop, Signal = signal, Timeout = timeout.TotalSeconds }, ct);
        }
        catch (ShimGoneException) { }
        catch (ShimNotAnsweringException e) { KillUnansweringShim(e); }
    }

    /// <summary>As <see cref="StopAsync"/>, a shim that does not answer a SIGKILL in time is killed.</summary>
    public async Task KillAsync(string stateDir, int signal, CancellationToken ct)
    {
        try { await AskAsync(stateDir, new ShimRequest { Op = ShimOps.Kill, Signal = signal }, ct); }
        catch (ShimGoneException) { }
        catch (ShimNotAnsweringException e) when (signal == Interop.Libc.SIGKILL) { KillUnansweringShim(e); }
        catch (ShimNotAnsweringException e) { throw Fail.DeadlineExceeded(e.Message); }
    }

    private void KillUnansweringShim(ShimNotAnsweringException e)
    {
        var killed = ShimClient.KillShim(e.StateDir);
        if (log is not null) LogShimKilled(log, e.Message, killed ? "killed it" : "it was gone by then");
    }

    [LoggerMessage(EventId = 420, Level = LogLevel.Warning, Message = "{Message}: {Outcome}; its container dies with it")]
    private static partial void LogShimKilled(ILogger log, string message, string outcome);

    /// <summary>Blocks until the container exited, then returns its final state. A shim that
    /// died without recording the exit (kill -9) yields <see cref="ShimClient.ShimDied"/>.</summary>
    public async Task<ShimState> WaitAsync(string id, string stateDir, CancellationToken ct)
    {
        // A broken connection to a shim that still runs is retried; a few, since the shim closes
        // connections only when its container has exited (and then state.json says so).
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var r = await SendAsync(stateDir, new ShimRequest { Op = ShimOps.Wait }, ct);
                if (r.State is { Status: ShimStatus.Stopped }) return r.State;
            }
            catch (ShimGoneException) { }
            catch (IOException) { } // the shim exited while we waited: its state file has the answer
            var last = ShimClient.ReadStateFile(stateDir);
            if (last is { Status: ShimStatus.Stopped }) return last;
            if (!ShimClient.IsShimAlive(stateDir) || attempt >= 3) return ShimClient.ShimDied(last, id, DateTimeOffset.UtcNow);
        }
    }

    /// <summary>The live state; the last recorded one when the shim has exited or does not answer; a
    /// <see cref="ShimClient.ShimDied"/> state when it died without recording an exit.</summary>
    public async Task<ShimState> StateAsync(string id, string stateDir, CancellationToken ct)
    {
        try
        {
            if ((await AskAsync(stateDir, new ShimRequest { Op = ShimOps.State }, ct)).State is { } live) return live;
        }
        catch (ShimGoneException) { }
        catch (IOException) { }
        // A shim that does not answer (the daemon's start-up resumes every container this way):
        // what it last recorded, rather than holding the caller or failing it.
        catch (ShimNotAnsweringException) { }
        var last = ShimClient.ReadStateFile(stateDir);
        return last is { Status: ShimStatus.Stopped } || ShimClient.IsShimAlive(stateDir) && last is not null
            ? last
            : ShimClient.ShimDied(last, id, DateTimeOffset.UtcNow);
    }

    /// <summary>Runs a command in the running container and returns its exit and output.</summary>
    public async Task<ExecResult> ExecAsync(string stateDir, IReadOnlyList<string> cmd, TimeSpan? timeout, CancellationToken ct)
    {
        ShimResponse r;
        try
        {
            r = await SendAsync(stateDir, new ShimRequest { Op = ShimOps.Exec, Args = cmd, Timeout = timeout?.TotalSeconds }, ct);
        }
        catch (ShimGoneException)
        {
            throw Fail.FailedPrecondition("the container is not running");
        }
        if (!r.Ok || r.Exec is null) throw Fail.FailedPrecondition($"exec {string.Join(' ', cmd)}: {r.Error}");
        return r.Exec;
    }

    /// <summary>Starts an interactive exec (exec-stream) or attaches (attach): the shim's answer
    /// and the sockets of the process's stdio. Refusals become FailedPrecondition.</summary>
    public async Task<ShimStream> OpenStreamAsync(string stateDir, ShimRequest request, CancellationToken ct)
    {
        ShimStream stream;
        try
        {
            stream = await ShimStream.OpenAsync(stateDir, request, ct);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable or SocketError.NotConnected
                                        || !File.Exists(Path.Combine(stateDir, StateFiles.Socket)))
        {
            throw Fail.FailedPrecondition("the container is not running");
        }
        catch (SocketException e)
        {
            // A shim that is there but cannot take the connection now (its backlog is full: EAGAIN).
            throw Fail.Unavailable($"{request.Op}: the container's shim did not take the connection: {e.Message}", e);
        }
        if (!stream.First.Ok)
        {
            stream.Dispose();
            throw Fail.FailedPrecondition($"{request.Op}: {stream.First.Error}");
        }
        return stream;
    }

    /// <summary>Resizes the terminal of exec'd process <paramref name="pid"/>, or the container's
    /// own when null. A session that has just ended is not an error.</summary>
    public async Task ResizeAsync(string stateDir, int? pid, ushort width, ushort height, CancellationToken ct)
    {
        try { await SendAsync(stateDir, new ShimRequest { Op = ShimOps.Resize, Pid = pid, Width = width, Height = height }, ct); }
        catch (ShimGoneException) { }
    }

    /// <summary>New resources for a created or running container: the shim writes its cgroup and
    /// rewrites the bundle's config.json (docs/shim-protocol.md, "Who owns what"). A container
    /// whose shim is gone has exited: FailedPrecondition, as for a container recorded exited.</summary>
    public async Task UpdateResourcesAsync(string id, string stateDir, Oci.LinuxResources resources, CancellationToken ct)
    {
        ShimResponse r;
        try
        {
            r = await SendAsync(stateDir, new ShimRequest { Op = ShimOps.Update, Resources = resources }, ct);
        }
        catch (ShimGoneException)
        {
            throw Fail.FailedPrecondition($"container {id} is not running");
        }
        if (!r.Ok) throw Fail.FailedPrecondition($"update resources of container {id}: {r.Error}");
    }

    public async Task ReopenLogAsync(string stateDir, CancellationToken ct)
    {
        var r = await SendAsync(stateDir, new ShimRequest { Op = ShimOps.ReopenLog }, ct);
        if (!r.Ok) throw Fail.FailedPrecondition($"reopen log: {r.Error}");
    }

    /// <summary>One request; a shim that does not answer within <see cref="AnswerWithin"/> is
    /// DeadlineExceeded, naming the request and the shim.</summary>
    private async Task<ShimResponse> SendAsync(string stateDir, ShimRequest request, CancellationToken ct)
    {
        try { return await AskAsync(stateDir, request, ct); }
        catch (ShimNotAnsweringException e) { throw Fail.DeadlineExceeded(e.Message); }
    }

    /// <summary>How long <paramref name="request"/> may take to be answered: what it asks for
    /// itself (a start: checkpoint.dump_timeout) plus <see cref="_answerTimeout"/>; null for a
    /// wait and an exec without a timeout (they last as long as the container or the command).</summary>
    internal TimeSpan? AnswerWithin(ShimRequest request) => request.Op switch
    {
        ShimOps.Wait or ShimOps.Exec when request.Timeout is not > 0 => null,
        ShimOps.Stop => TimeSpan.FromSeconds(request.Timeout ?? ShimRequest.DefaultStopTimeout) + _answerTimeout,
        // A start may be a CRIU restore, which the shim runs before it answers: as long as a dump.
        ShimOps.Start => config.Checkpoint.DumpTimeout + _answerTimeout,
        _ => TimeSpan.FromSeconds(request.Timeout ?? 0) + _answerTimeout,
    };

    private async Task<ShimResponse> AskAsync(string stateDir, ShimRequest request, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var within = AnswerWithin(request);
        if (within is { } w) deadline.CancelAfter(w);
        try
        {
            return await new ShimClient(stateDir).SendAsync(request, deadline.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && within is { } bound)
        {
            throw new ShimNotAnsweringException(stateDir, request.Op, bound);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable or SocketError.NotConnected)
        {
            throw new ShimGoneException(stateDir, e);
        }
        catch (SocketException e) when (!File.Exists(Path.Combine(stateDir, StateFiles.Socket)))
        {
            throw new ShimGoneException(stateDir, e);
        }
    }
}

/// <summary>The shim no longer answers: its container has exited and the shim with it.</summary>
public sealed class ShimGoneException(string stateDir, Exception inner) : Exception($"shim of {stateDir} is gone", inner);

/// <summary>The shim took the request (its socket is there) and did not answer in time: it hangs,
/// or it is stopped.</summary>
public sealed class ShimNotAnsweringException(string stateDir, string op, TimeSpan within)
    : Exception($"the container's shim ({stateDir}) did not answer {op} within {Config.Duration.Format(within)}")
{
    public string StateDir { get; } = stateDir;
}
