using System.Net;
using System.Net.Sockets;
using CriRuntime.Errors;
using CriRuntime.Namespaces;

namespace CriRuntime.Streaming.PortForward;

/// <summary>Port forwarding into a pod: the socket is created on a thread that joined the pod's
/// pinned network namespace (a socket stays in the namespace it was created in), so connecting to
/// 127.0.0.1:PORT reaches the pod's loopback, then it is used from any thread. No process is
/// started in the pod and nothing is needed inside it (no socat, no nsenter).</summary>
public sealed class SandboxPortForwarder
{
    public async Task ForwardAsync(PodTarget pod, int port, Stream stream, CancellationToken ct)
    {
        if (port is < 1 or > 65535) throw Fail.InvalidArgument($"port {port} is out of range 1-65535");
        var socket = CreateSocket(pod);
        try
        {
            try
            {
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), ct).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw Fail.Unavailable($"connect to 127.0.0.1:{port} in pod sandbox {pod.Id} (netns {pod.NetNs ?? "host"}): {e.SocketErrorCode} ({e.Message})", e);
            }
            await PumpAsync(socket, stream, ct).ConfigureAwait(false);
        }
        finally
        {
            socket.Dispose();
        }
    }

    private static Socket CreateSocket(PodTarget pod)
    {
        if (pod.NetNs is null) return NewSocket(); // host network pod: the host's loopback is the pod's
        if (!File.Exists(pod.NetNs)) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is not ready (its network namespace {pod.NetNs} is gone)");
        Socket? socket = null;
        NamespacePinner.RunIn(NamespaceKind.Net, pod.NetNs, () => socket = NewSocket());
        return socket!;
    }

    private static Socket NewSocket() => new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };

    /// <summary>Copies both ways. The client's end of input half-closes the pod connection (the
    /// pod's server sees EOF and may still answer); the pod's end of output ends the forward.</summary>
    private static async Task PumpAsync(Socket socket, Stream stream, CancellationToken ct)
    {
        using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await using var pod = new NetworkStream(socket, ownsSocket: false);
        var toPod = Task.Run(async () =>
        {
            await stream.CopyToAsync(pod, done.Token).ConfigureAwait(false);
            socket.Shutdown(SocketShutdown.Send);
        }, done.Token);
        var fromPod = pod.CopyToAsync(stream, done.Token);
        var first = await Task.WhenAny(toPod, fromPod).ConfigureAwait(false);
        try
        {
            if (first == toPod && toPod.IsCompletedSuccessfully) await fromPod.ConfigureAwait(false);
            else await first.ConfigureAwait(false);
        }
        finally
        {
            await done.CancelAsync().ConfigureAwait(false);
            try { await Task.WhenAll(toPod, fromPod).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException) { }
        }
    }
}
