using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Streams created/started/stopped/deleted events from now on, in order, until the
    /// caller goes away.</summary>
    public override async Task GetContainerEvents(GetEventsRequest request, IServerStreamWriter<ContainerEventResponse> responseStream, ServerCallContext context)
    {
        var reader = _events.Subscribe(context.CancellationToken);
        // Headers go out once the subscription exists: a client that awaits them knows it will
        // see every event from then on. Kestrel holds written headers until a flush.
        await context.WriteResponseHeadersAsync(new Metadata());
        await context.GetHttpContext().Response.Body.FlushAsync(context.CancellationToken);
        try
        {
            await foreach (var e in reader.ReadAllAsync(context.CancellationToken))
            {
                var withPod = e.Clone();
                if (_containers.Find(e.ContainerId) is { } c && _pods.Find(c.PodId) is { } pod)
                {
                    withPod.PodSandboxStatus = new Cri.V1.PodSandboxStatus { Id = pod.Id, Metadata = pod.Metadata, CreatedAt = pod.CreatedAtNanos };
                }
                await responseStream.WriteAsync(withPod, context.CancellationToken);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested) { }
    }
}
