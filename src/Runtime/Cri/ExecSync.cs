using CriRuntime.Cri.V1;
using CriRuntime.Errors;
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
        if (request.Cmd.Count == 0) throw Fail.InvalidArgument("cmd: required");
        if (request.Timeout < 0) throw Fail.InvalidArgument($"timeout: {request.Timeout} must not be negative");
        var c = _containers.Get(request.ContainerId);
        if (c.State != ContainerPhase.Running) throw Fail.FailedPrecondition($"container {c.Id} is not running");
        var timeout = request.Timeout > 0 ? TimeSpan.FromSeconds(request.Timeout) : (TimeSpan?)null;
        var result = await _shims.ExecAsync(c.StateDir, [.. request.Cmd], timeout, context.CancellationToken);
        if (result.TimedOut)
            throw Fail.DeadlineExceeded($"command {string.Join(' ', request.Cmd)} timed out after {request.Timeout}s");
        return new ExecSyncResponse
        {
            ExitCode = result.ExitCode,
            Stdout = ByteString.CopyFrom(result.Stdout),
            Stderr = ByteString.CopyFrom(result.Stderr),
        };
    }
}
