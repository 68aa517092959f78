using System.Threading.Channels;
using CriRuntime.Errors;

namespace CriRuntime.Streaming.RemoteCommand;

/// <summary>An exec or attach, transport independent: which streams the client asked for and
/// how to run it against the backend.</summary>
public sealed record RemoteCommandRequest(ContainerTarget Target, IReadOnlyList<string>? Cmd, bool Stdin, bool Stdout, bool Stderr, bool Tty)
{
    public bool IsExec => Cmd is not null;
    public string ContainerId => Target.Id;

    public static RemoteCommandRequest From(Cri.V1.ExecRequest r, ContainerTarget target) => new(target, [.. r.Cmd], r.Stdin, r.Stdout, r.Stderr, r.Tty);
    public static RemoteCommandRequest From(Cri.V1.AttachRequest r, ContainerTarget target) => new(target, null, r.Stdin, r.Stdout, r.Stderr, r.Tty);

    /// <summary>The streams a client connected and the resize events decoded from its resize stream.</summary>
    public sealed record Streams(Stream? Stdin, Stream? Stdout, Stream? Stderr, ChannelReader<TerminalSize>? Resize);

    /// <summary>Runs the command; the outcome as the status the error stream reports.
    /// Failures of the backend become InternalError statuses, never exceptions.</summary>
    public async Task<KubeStatus> RunAsync(IStreamingRuntime runtime, Streams streams, CancellationToken ct)
    {
        try
        {
            var code = IsExec
                ? await runtime.ExecAsync(Target, Cmd!, Tty, streams.Stdin, streams.Stdout, streams.Stderr, streams.Resize, ct).ConfigureAwait(false)
                : await runtime.AttachAsync(Target, Tty, streams.Stdin, streams.Stdout, streams.Stderr, streams.Resize, ct).ConfigureAwait(false);
            return KubeStatus.For(code);
        }
        catch (CriException e)
        {
            return KubeStatus.InternalError($"error {(IsExec ? "executing command in" : "attaching to")} container {ContainerId}: {e.Message}");
        }
        catch (IOException e)
        {
            return KubeStatus.InternalError($"stream to container {ContainerId} broke: {e.Message}");
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return KubeStatus.InternalError("the client closed the connection");
        }
    }
}
