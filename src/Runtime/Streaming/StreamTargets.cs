using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;

namespace CriRuntime.Streaming;

/// <summary>The daemon's side of a streaming request: resolves the container or pod from its
/// stores into what the stream server needs to serve it alone, refusing what cannot be served:
/// NotFound for an unknown id, FailedPrecondition for a container not running or a pod not ready.</summary>
public sealed class StreamTargets(ContainerStore containers, PodSandboxStore pods)
{
    public ContainerTarget Container(string containerId)
    {
        var c = containers.Get(containerId);
        if (c.State != ContainerPhase.Running) throw Fail.FailedPrecondition($"container {c.Id} is not running");
        return new ContainerTarget(c.Id, c.StateDir, c.Stdin, c.Tty, c.StdinOnce);
    }

    public PodTarget Pod(string podSandboxId)
    {
        var pod = pods.Get(podSandboxId);
        if (pod.State != PodState.Ready) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is not ready");
        return new PodTarget(pod.Id, pod.NetNs);
    }
}
