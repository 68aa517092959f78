using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task StreamContainerStats(StreamContainerStatsRequest request, IServerStreamWriter<StreamContainerStatsResponse> responseStream, ServerCallContext context)
    {
        var list = await ListContainerStats(new ListContainerStatsRequest { Filter = request.Filter }, context);
        foreach (var chunk in list.Stats.Chunk(StreamBatch))
            await responseStream.WriteAsync(new StreamContainerStatsResponse { ContainerStats = { chunk } }, context.CancellationToken);
    }
}
