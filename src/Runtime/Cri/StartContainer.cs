using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task<StartContainerResponse> StartContainer(StartContainerRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        await _containerCtl.StartAsync(c.Id, context.CancellationToken);
        return new StartContainerResponse();
    }
}
