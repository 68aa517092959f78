using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Stops every container of the pod and releases its network. Idempotent: an unknown
    /// or already stopped pod is success, and teardown is attempted again each time until it worked.</summary>
    public override async Task<StopPodSandboxResponse> StopPodSandbox(StopPodSandboxRequest request, ServerCallContext context)
    {
        if (_pods.TryGet(request.PodSandboxId) is { } pod) await _podCtl.StopAsync(pod.Id, context.CancellationToken);
        return new StopPodSandboxResponse();
    }
}
