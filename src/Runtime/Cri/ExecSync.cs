using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Shim.Client;
using CriRuntime.State;
using Google.Protobuf;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Runs a command inside the running container (its namespaces, cgroup, user and
    /// security settings) and returns its output once it exited; a timeout kills it and answers
    /// DeadlineExceeded, which is what the kubelet's exec probes expect.</summary>
    public override async Task<ExecSyncResponse> ExecSync(ExecSyncRequest request, ServerCallContext context)
    {
        var steps = new Containers.StepTimes();
        if (request.Cmd.Count == 0) throw Fail.InvalidArgument("cmd: required");
        var timeout = ExecTimeout(request.Timeout);
        var c = _containers.Get(request.ContainerId);
        if (c.State != ContainerPhase.Running) throw Fail.FailedPrecondition($"container {c.Id} is not running");
        // The shim kills the command at the timeout and answers; should it not answer (wedged, a
        // command in a frozen cgroup that cannot die), ShimRunner ends the call DeadlineExceeded
        // runtime.shim_answer_timeout after the timeout.
        steps.Mark("checks");
        var result = await _shims.ExecAsync(c.StateDir, [.. request.Cmd], timeout, context.CancellationToken);
        steps.Mark("shim");
        if (result.TimedOut)
            throw Fail.DeadlineExceeded($"command {string.Join(' ', request.Cmd)} timed out after {request.Timeout}s");
        var response = new ExecSyncResponse
        {
            ExitCode = result.ExitCode,
            Stdout = ByteString.CopyFrom(result.Stdout),
            Stderr = ByteString.CopyFrom(result.Stderr),
        };
        steps.Mark("response");
        ExecSyncLog.Steps(_log, c.Id, steps);
        return response;
    }

    private static partial class ExecSyncLog
    {
        /// <summary>Where the call's time went (the bench's lifecycle section reads it): "shim" is
        /// the round trip to the container's shim, which runs the command and collects its output.</summary>
        [LoggerMessage(EventId = 1500, Level = LogLevel.Debug, Message = "ExecSync {ContainerId}: {Steps}")]
        public static partial void Steps(ILogger logger, string containerId, Containers.StepTimes steps);
    }

    /// <summary>The CRI's timeout in seconds (0: none) as what the shim waits: at most
    /// int.MaxValue milliseconds (a wait handle's limit, ~24.8 days), so a longer one, which only
    /// a client that means "no timeout" sends, waits without one. One that is not even a
    /// TimeSpan is a malformed request.</summary>
    internal static TimeSpan? ExecTimeout(long seconds)
    {
        if (seconds < 0) throw Fail.InvalidArgument($"timeout: {seconds} must not be negative");
        if (seconds > (long)TimeSpan.MaxValue.TotalSeconds)
            throw Fail.InvalidArgument($"timeout: {seconds} seconds is beyond what can be represented (at most {(long)TimeSpan.MaxValue.TotalSeconds})");
        if (seconds == 0 || seconds > int.MaxValue / 1000) return null;
        return TimeSpan.FromSeconds(seconds);
    }
}
