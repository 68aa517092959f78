using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Starts the container's shim (namespaces, cgroup, rootfs: CreateContainer made only
    /// the record, bundle and rootfs mount), then lets the container exec.</summary>
    public override async Task<StartContainerResponse> StartContainer(StartContainerRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        var pod = _pods.Get(c.PodId);
        await _containerCtl.StartAsync(c.Id, pod.RuntimeHandler, context.CancellationToken);
        return new StartContainerResponse();
    }

    /// <summary>The first half of StartContainer ahead of it: the created container's shim is
    /// started (not the container), so a migration target's StartContainer, called once criu
    /// lazy-pages is up, has only the restore left to wait for.</summary>
    internal async Task StartShimAheadAsync(string containerId, CancellationToken ct)
    {
        var c = _containers.Get(containerId);
        await _containerCtl.StartShimAheadAsync(c.Id, _pods.Get(c.PodId).RuntimeHandler, ct);
    }
}
