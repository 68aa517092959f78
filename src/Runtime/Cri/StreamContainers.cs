using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task StreamContainers(StreamContainersRequest request, IServerStreamWriter<StreamContainersResponse> responseStream, ServerCallContext context)
    {
        foreach (var chunk in FilterContainers(request.Filter).Select(ToContainer).Chunk(StreamBatch))
            await responseStream.WriteAsync(new StreamContainersResponse { Containers = { chunk } }, context.CancellationToken);
    }
}
