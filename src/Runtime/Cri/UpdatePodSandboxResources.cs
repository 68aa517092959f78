using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>The kubelet's new pod-level resources (in-place resize). Kept with the pod; when the
    /// pod cgroup is ours (no cgroup_parent given) its limits are changed live. A kubelet-managed
    /// pod cgroup is the kubelet's to write.</summary>
    public override async Task<UpdatePodSandboxResourcesResponse> UpdatePodSandboxResources(UpdatePodSandboxResourcesRequest request, ServerCallContext context)
    {
        var resources = ResourceLimits.From(request.Resources, "resources");
        ResourceLimits.From(request.Overhead, "overhead"); // validated, kept, not applied: the kubelet sizes the parent
        await _podCtl.UpdateResourcesAsync(request.PodSandboxId, request.Resources, resources, request.Overhead, context.CancellationToken);
        return new UpdatePodSandboxResourcesResponse();
    }
}
