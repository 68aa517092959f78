using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task<ReopenContainerLogResponse> ReopenContainerLog(ReopenContainerLogRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        if (c.State != ContainerPhase.Running) throw Fail.FailedPrecondition($"container {c.Id} is not running");
        await _shims.ReopenLogAsync(c.StateDir, context.CancellationToken);
        return new ReopenContainerLogResponse();
    }
}
