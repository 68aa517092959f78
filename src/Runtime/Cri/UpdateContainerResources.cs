using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Changes the cgroup limits of a created or running container, live, through its
    /// shim (which also rewrites the bundle's config.json), and keeps them in its record so
    /// ContainerStatus reports them.</summary>
    public override async Task<UpdateContainerResourcesResponse> UpdateContainerResources(UpdateContainerResourcesRequest request, ServerCallContext context)
    {
        if (request.Linux is null) throw Fail.InvalidArgument("linux: required");
        ResourceLimits.From(request.Linux, "linux"); // InvalidArgument naming the CRI field, before anything is sent
        var c = _containers.Get(request.ContainerId);
        using (await _containers.LockAsync(c.Id, context.CancellationToken))
        {
            c = _containers.Find(c.Id) ?? throw Fail.NotFound($"container {request.ContainerId} not found");
            if (c.State is ContainerPhase.Exited or ContainerPhase.Unknown)
                throw Fail.FailedPrecondition($"container {c.Id} is not running");
            // The shim owns the container's cgroup and bundle: it writes both (docs/shim-protocol.md).
            await _shims.UpdateResourcesAsync(c.Id, c.StateDir, SpecBuilder.Resources(request.Linux)!, context.CancellationToken);
            _containers.Update(c.Id, r => r with { Resources = ResourcesRecord.From(request.Linux) });
        }
        return new UpdateContainerResourcesResponse();
    }
}
