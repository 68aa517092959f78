using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task StreamPodSandboxStats(StreamPodSandboxStatsRequest request, IServerStreamWriter<StreamPodSandboxStatsResponse> responseStream, ServerCallContext context)
    {
        var list = await ListPodSandboxStats(new ListPodSandboxStatsRequest { Filter = request.Filter }, context);
        foreach (var chunk in list.Stats.Chunk(StreamBatch))
            await responseStream.WriteAsync(new StreamPodSandboxStatsResponse { PodSandboxStats = { chunk } }, context.CancellationToken);
    }
}
