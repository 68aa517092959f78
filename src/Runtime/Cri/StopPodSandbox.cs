using CriRuntime.Cri.V1;
using CriRuntime.Namespaces;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Stops every container of the pod and releases its network. Idempotent: an unknown
    /// or already stopped pod is success, and teardown is attempted again each time until it worked.</summary>
    public override async Task<StopPodSandboxResponse> StopPodSandbox(StopPodSandboxRequest request, ServerCallContext context)
    {
        var pod = _pods.TryGet(request.PodSandboxId);
        if (pod is null) return new StopPodSandboxResponse();
        using (await _pods.LockAsync(pod.Id, context.CancellationToken))
        {
            pod = _pods.Find(pod.Id);
            if (pod is null) return new StopPodSandboxResponse();
            await StopPodLockedAsync(pod, context.CancellationToken);
        }
        return new StopPodSandboxResponse();
    }

    private async Task StopPodLockedAsync(PodSandboxRecord pod, CancellationToken ct)
    {
        // Containers are stopped first (once containers exist), then the network goes.
        if (pod.NetNs is not null)
        {
            await _network.TearDownAsync(pod.Id, ct);
            NamespacePinner.Unpin(pod.NetNs);
        }
        if (pod.State != PodState.NotReady)
            _pods.Save(pod with { State = PodState.NotReady });
    }
}
