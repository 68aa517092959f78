using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Changes the cgroup limits of a created or running container, live, through its
    /// shim (which also rewrites the bundle's config.json; before StartContainer, with no shim
    /// yet, only config.json), and keeps them in its record so ContainerStatus reports them.</summary>
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
            // The blockio class (as the config in force defines it now), io.max/io.weight entries
            // and the pod's io-limit annotation become blockIO weights and throttles, rootfs the
            // container's loop device or the disk under it (docs/storage.md).
            var record = c;
            var podAnnotations = _pods.Find(c.PodId)?.Annotations ?? new Dictionary<string, string>();
            var blockio = InForce.Storage.Blockio.For(c.Name, c.Annotations, podAnnotations);
            var resources = Storage.IoLimits.Apply(SpecBuilder.Resources(request.Linux), "linux.unified", c.Name,
                podAnnotations, d => ContainerController.IoDevice(d, record.Volume, Path.GetDirectoryName(record.BundleDir)!), blockio, Storage.BlockDevices.Expand, Storage.BlockDevices.Host.Scheduler)!;
            // The shim owns the container's cgroup and bundle: it writes both (docs/shim-protocol.md).
            // Before StartContainer there is no shim nor cgroup yet: the bundle alone changes.
            if (ContainerController.HasShim(c)) await _shims.UpdateResourcesAsync(c.Id, c.StateDir, resources, context.CancellationToken);
            else ContainerController.UpdateBundleResources(c, resources);
            _containers.Update(c.Id, r => r with { Resources = ResourcesRecord.From(request.Linux) });
        }
        return new UpdateContainerResourcesResponse();
    }
}
