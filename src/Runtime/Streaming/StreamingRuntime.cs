using System.Threading.Channels;
using CriRuntime.Containers;
using CriRuntime.Errors;
using CriRuntime.State;
using CriRuntime.Streaming.PortForward;

namespace CriRuntime.Streaming;

/// <summary>The daemon's <see cref="IStreamingRuntime"/>. Port forwarding into the pod's network
/// namespace is complete. Exec runs through the shim's exec: without stdin and without a
/// terminal its output is delivered when the command ends; interactive exec (stdin, tty) and
/// attach need streaming stdio from the shim, which it does not offer yet, and say so.</summary>
public sealed class StreamingRuntime(SandboxPortForwarder portForwarder, ContainerStore containers, ShimRunner shims) : IStreamingRuntime
{
    private const string NotInteractive = "interactive sessions (stdin, tty, attach) are not supported by criruntime yet; exec without -i/-t works";

    public void EnsureContainerRunning(string containerId)
    {
        var c = containers.Get(containerId);
        if (c.State != ContainerPhase.Running) throw Fail.FailedPrecondition($"container {c.Id} is not running");
    }

    public async Task<int> ExecAsync(string containerId, IReadOnlyList<string> cmd, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct)
    {
        if (tty || stdin is not null) throw Fail.FailedPrecondition(NotInteractive);
        var c = containers.Get(containerId);
        if (c.State != ContainerPhase.Running) throw Fail.FailedPrecondition($"container {c.Id} is not running");
        var result = await shims.ExecAsync(c.StateDir, cmd, null, ct);
        if (stdout is not null) await stdout.WriteAsync(result.Stdout, ct);
        if (stderr is not null) await stderr.WriteAsync(result.Stderr, ct);
        return result.ExitCode;
    }

    public Task<int> AttachAsync(string containerId, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct) => throw Fail.FailedPrecondition(NotInteractive);

    public Task PortForwardAsync(string podSandboxId, int port, Stream stream, CancellationToken ct) =>
        portForwarder.ForwardAsync(podSandboxId, port, stream, ct);
}
