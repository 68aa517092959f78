using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>How many items one message of a Stream* RPC carries: a node with thousands of
    /// pods never needs one huge message.</summary>
    private const int StreamBatch = 100;

    public override async Task StreamPodSandboxes(StreamPodSandboxesRequest request, IServerStreamWriter<StreamPodSandboxesResponse> responseStream, ServerCallContext context)
    {
        foreach (var chunk in FilterPods(request.Filter).Select(ToPodSandbox).Chunk(StreamBatch))
            await responseStream.WriteAsync(new StreamPodSandboxesResponse { PodSandboxes = { chunk } }, context.CancellationToken);
    }
}
