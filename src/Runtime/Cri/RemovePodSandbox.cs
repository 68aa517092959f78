using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Removes a pod and everything it owned (stopping it first if needed). Idempotent.</summary>
    public override async Task<RemovePodSandboxResponse> RemovePodSandbox(RemovePodSandboxRequest request, ServerCallContext context)
    {
        if (_pods.TryGet(request.PodSandboxId) is { } pod) await _podCtl.RemoveAsync(pod.Id, context.CancellationToken);
        return new RemovePodSandboxResponse();
    }
}
