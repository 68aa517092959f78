using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>The container's stop signal (the kubelet's, else the image's, else SIGTERM), then
    /// SIGKILL after the timeout. Idempotent: unknown or exited containers are success.</summary>
    public override async Task<StopContainerResponse> StopContainer(StopContainerRequest request, ServerCallContext context)
    {
        var c = _containers.TryGet(request.ContainerId);
        if (c is null) return new StopContainerResponse();
        // A grace period is the kubelet's to choose (terminationGracePeriodSeconds): one longer than
        // a wait can take (int.MaxValue ms, ~24.8 days) waits that long, not an Internal error.
        await _containerCtl.StopAsync(c, TimeSpan.FromSeconds(Math.Clamp(request.Timeout, 0, int.MaxValue / 1000)), context.CancellationToken);
        return new StopContainerResponse();
    }
}
