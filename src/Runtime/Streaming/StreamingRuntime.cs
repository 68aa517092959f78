using System.Threading.Channels;
using CriRuntime.Errors;
using CriRuntime.Streaming.PortForward;

namespace CriRuntime.Streaming;

/// <summary>The daemon's <see cref="IStreamingRuntime"/>: port forwarding into the pod's network
/// namespace is real; exec and attach wait for the container shim (containers do not exist yet,
/// so every container id is unknown).</summary>
public sealed class StreamingRuntime(SandboxPortForwarder portForwarder) : IStreamingRuntime
{
    private const string NoContainers = "exec and attach are not available until containers exist";

    public void EnsureContainerRunning(string containerId) =>
        throw Fail.NotFound($"container {containerId} not found");

    public Task<int> ExecAsync(string containerId, IReadOnlyList<string> cmd, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct) => throw Fail.FailedPrecondition(NoContainers);

    public Task<int> AttachAsync(string containerId, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct) => throw Fail.FailedPrecondition(NoContainers);

    public Task PortForwardAsync(string podSandboxId, int port, Stream stream, CancellationToken ct) =>
        portForwarder.ForwardAsync(podSandboxId, port, stream, ct);
}
