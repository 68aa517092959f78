using System.Text.Json.Serialization;
using CriRuntime.Oci;

namespace CriRuntime.Shim.Client;

// The control protocol of one shim (docs/shim-protocol.md): a unix socket "control.sock" in the
// container's state dir; each request is one JSON object on one line, answered by one JSON line.
// Shared by the shim and the daemon's client.

public static class ShimOps
{
    public const string State = "state", Start = "start", Kill = "kill", Wait = "wait", Stop = "stop", ReopenLog = "reopen-log", Exec = "exec",
        ExecStream = "exec-stream", Attach = "attach", Resize = "resize", Update = "update";
}

/// <summary>What the daemon tells the shim through config.json's annotations, for what the OCI
/// spec has no field.</summary>
public static class ShimAnnotations
{
    /// <summary>"true": the container gets a stdin (the CRI's stdin), which attach can write to.</summary>
    public const string Stdin = "io.criruntime.stdin";
    /// <summary>"true": the rootfs is mapped to the container's user namespace already (the daemon
    /// mounted the overlay on idmapped layers, overlayfs itself cannot be idmapped): the shim
    /// passes it to the init as it is.</summary>
    public const string RootfsIdmapped = "io.criruntime.rootfs-idmapped";
}

public static class ShimStatus
{
    public const string Created = "created", Running = "running", Stopped = "stopped";
}

public sealed record ShimRequest
{
    public string Op { get; init; } = "";
    /// <summary>kill: the signal (default SIGKILL); stop: the stop signal (default SIGTERM).</summary>
    public int? Signal { get; init; }
    /// <summary>stop: seconds between the stop signal and SIGKILL (default
    /// <see cref="DefaultStopTimeout"/>); wait: give up after (default forever); exec: SIGKILL the
    /// process after (default forever).</summary>
    public double? Timeout { get; init; }
    /// <summary>A stop's grace period when the request gives none (monitor.c has the same 10).</summary>
    public const double DefaultStopTimeout = 10;
    /// <summary>exec: the command; env and cwd default to the container's process.</summary>
    public IReadOnlyList<string>? Args { get; init; }
    public IReadOnlyList<string>? Env { get; init; }
    public string? Cwd { get; init; }
    /// <summary>exec-stream: run the command on a terminal (stdout and stderr are the terminal).</summary>
    public bool? Tty { get; init; }
    /// <summary>exec-stream, attach: the caller wants to write to the process's stdin.</summary>
    public bool? Stdin { get; init; }
    /// <summary>resize: the exec'd process (its pid, from the exec-stream answer) whose terminal
    /// changes size; absent for the container's own terminal.</summary>
    public int? Pid { get; init; }
    public ushort? Width { get; init; }
    public ushort? Height { get; init; }
    /// <summary>update: the container's new linux.resources (OCI); null fields keep their value.</summary>
    public LinuxResources? Resources { get; init; }
    /// <summary>The caller's W3C trace context (the daemon's span for this request), so the shim's
    /// log lines for it name the trace; the shim answers with its <see cref="ShimResponse.Phases"/>.</summary>
    public string? TraceParent { get; init; }
}

/// <summary>A step the shim timed itself (wall clock, Unix nanoseconds): the daemon records it as
/// a child span of its own span for the request (docs/observability.md, "Traces").</summary>
public sealed record ShimPhase
{
    public string Name { get; init; } = "";
    public long Start { get; init; }
    public long End { get; init; }

    public static long Now() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100;

    public static DateTimeOffset ToTime(long unixNanos) => DateTimeOffset.UnixEpoch.AddTicks(unixNanos / 100);
}

/// <summary>The outcome of an exec (the CRI's ExecSync): output is captured up to
/// <see cref="MaxOutput"/> bytes per stream (JSON base64).</summary>
public sealed record ExecResult
{
    public const int MaxOutput = 16 * 1024 * 1024;
    public int ExitCode { get; init; }
    public int? Signal { get; init; }
    public byte[] Stdout { get; init; } = [];
    public byte[] Stderr { get; init; } = [];
    public bool TimedOut { get; init; }
}

public sealed record ShimResponse
{
    public bool Ok { get; init; }
    public string? Error { get; init; }
    public ShimState? State { get; init; }
    public ExecResult? Exec { get; init; }
    /// <summary>exec-stream, attach: what each descriptor passed with this answer (SCM_RIGHTS) is,
    /// in order: "stdin", "stdout", "stderr" (connected unix stream sockets) or "tty" (one
    /// socket carrying the terminal both ways).</summary>
    public IReadOnlyList<string>? Fds { get; init; }
    /// <summary>exec-stream: the host pid of the process (for resize).</summary>
    public int? Pid { get; init; }
    /// <summary>start: what the shim did and when (the init's execve, or CRIU's restore).</summary>
    public IReadOnlyList<ShimPhase>? Phases { get; init; }
}

/// <summary>What the shim knows of its container. Also the content of state.json in the state
/// dir, rewritten atomically on every transition, so the last state survives the shim.</summary>
public sealed record ShimState
{
    public string Id { get; init; } = "";
    public string Status { get; init; } = ShimStatus.Created;
    public int ShimPid { get; init; }
    /// <summary>The container's init (pid 1 inside), as seen from the host.</summary>
    public int Pid { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>The exit status; 128+n when killed by signal n (the CRI convention).</summary>
    public int? ExitCode { get; init; }
    public int? Signal { get; init; }
    public bool OomKilled { get; init; }
    /// <summary>"Completed", "Error", "OOMKilled" or "StartError", as the CRI's ContainerStatus.reason.</summary>
    public string? Reason { get; init; }
    public string? Message { get; init; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ShimRequest))]
[JsonSerializable(typeof(ShimResponse))]
[JsonSerializable(typeof(ShimState))]
[JsonSerializable(typeof(List<ShimPhase>))]
[JsonSerializable(typeof(RestoreSpec))]
public sealed partial class ShimJsonContext : JsonSerializerContext;

/// <summary>bundle/restore.json, written by the daemon for a container created from a checkpoint
/// archive: instead of starting an init at create, the shim runs CRIU at start with exactly these
/// arguments (decided and checked by the daemon), handing it the new stdout/stderr pipes and the
/// namespace files as the fds the arguments name (--inherit-fd).</summary>
public sealed record RestoreSpec
{
    public const string FileName = "restore.json";
    /// <summary>The criu binary.</summary>
    public string Criu { get; init; } = "";
    public IReadOnlyList<string> Args { get; init; } = [];
    /// <summary>Added to CRIU's environment (KEY=VALUE).</summary>
    public IReadOnlyList<string> Env { get; init; } = [];
    /// <summary>The fd CRIU gets the write end of the new stdout pipe as (0: none).</summary>
    public int StdoutFd { get; init; }
    /// <summary>The fd CRIU gets the write end of the new stderr pipe as (0: none; equal to
    /// <see cref="StdoutFd"/> when the checkpointed init wrote both to one pipe).</summary>
    public int StderrFd { get; init; }
    /// <summary>Files (namespaces) opened read-only by the shim and passed as fd N.</summary>
    public IReadOnlyDictionary<string, string> Files { get; init; } = new Dictionary<string, string>();
    /// <summary>Where CRIU writes the restored init's host pid (--pidfile).</summary>
    public string PidFile { get; init; } = "";
    /// <summary>CRIU's log, whose last errors are the start error on failure.</summary>
    public string LogFile { get; init; } = "";
    /// <summary>The nice value CRIU runs at (0: the shim's own), as the daemon's own CRIU runs do:
    /// the restore is a container's downtime, ahead of the node's other work. CRIU sets each
    /// restored task's own scheduling values from the image, so the container does not keep it.</summary>
    public int Nice { get; init; }
}

/// <summary>The well-known files of a container's state dir.</summary>
public static class StateFiles
{
    public const string ShimPid = "shim.pid", ContainerPid = "container.pid", State = "state.json",
        Socket = "control.sock", ShimLog = "shim.log";
}
