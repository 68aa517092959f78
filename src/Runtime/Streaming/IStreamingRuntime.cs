using System.Threading.Channels;

namespace CriRuntime.Streaming;

/// <summary>A terminal resize the client asked for (JSON {"Width":..,"Height":..} on the wire).</summary>
public readonly record struct TerminalSize(ushort Width, ushort Height);

/// <summary>What the streaming server needs from the runtime: the backend of exec, attach and
/// port-forward once a client has connected to a streaming URL. Targets come resolved with the
/// token (the stream server has no stores). Streams are null when the
/// request did not ask for them. Implementations close nothing they were given; the server
/// closes the streams after the call returns.</summary>
public interface IStreamingRuntime
{
    /// <summary>Runs <paramref name="cmd"/> in the container; returns its exit code. With
    /// <paramref name="tty"/>, output goes to <paramref name="stdout"/> only and
    /// <paramref name="resize"/> carries terminal size changes (completes when the client is gone).</summary>
    Task<int> ExecAsync(ContainerTarget container, IReadOnlyList<string> cmd, bool tty,
        Stream? stdin, Stream? stdout, Stream? stderr, ChannelReader<TerminalSize>? resize, CancellationToken ct);

    /// <summary>Attaches to the container's main process until it exits (its exit code) or
    /// <paramref name="ct"/> is cancelled (the client left).</summary>
    Task<int> AttachAsync(ContainerTarget container, bool tty,
        Stream? stdin, Stream? stdout, Stream? stderr, ChannelReader<TerminalSize>? resize, CancellationToken ct);

    /// <summary>Connects to <paramref name="port"/> on the pod's loopback and pumps bytes between it and
    /// <paramref name="stream"/> until either side ends. Throws a CriException if it cannot connect.</summary>
    Task PortForwardAsync(PodTarget pod, int port, Stream stream, CancellationToken ct);
}
