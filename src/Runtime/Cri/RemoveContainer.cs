using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Removes a container, killing it first if it still runs. Idempotent.</summary>
    public override async Task<RemoveContainerResponse> RemoveContainer(RemoveContainerRequest request, ServerCallContext context)
    {
        var c = _containers.TryGet(request.ContainerId);
        if (c is null) return new RemoveContainerResponse();
        await _containerCtl.RemoveAsync(c, context.CancellationToken);
        return new RemoveContainerResponse();
    }
}
