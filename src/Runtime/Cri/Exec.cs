using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Validates the exec and returns a single-use URL on the stream server (registered
    /// there with the container's shim, so it is served even if this daemon is gone by then); the
    /// command runs when the client connects there.</summary>
    public override Task<ExecResponse> Exec(ExecRequest request, ServerCallContext context)
    {
        ValidateStreams("exec", request.ContainerId, request.Stdin, request.Stdout, request.Stderr, request.Tty);
        if (request.Cmd.Count == 0 || request.Cmd[0].Length == 0) throw Fail.InvalidArgument("cmd: required (the command to run)");
        return _streaming.ExecAsync(request, context.CancellationToken);
    }

    /// <summary>kubelet's rules for exec and attach: a container, at least one stream, and no
    /// stderr with a TTY (a terminal has one output).</summary>
    private static void ValidateStreams(string what, string containerId, bool stdin, bool stdout, bool stderr, bool tty)
    {
        if (string.IsNullOrEmpty(containerId)) throw Fail.InvalidArgument("container_id: required");
        if (tty && stderr) throw Fail.InvalidArgument($"{what}: tty and stderr cannot both be true");
        if (!stdin && !stdout && !stderr) throw Fail.InvalidArgument($"{what}: one of stdin, stdout or stderr must be set");
    }
}
