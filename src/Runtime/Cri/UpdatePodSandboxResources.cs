using CriRuntime.Cgroups;
using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Google.Protobuf;
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
        var pod = _pods.Get(request.PodSandboxId);
        using (await _pods.LockAsync(pod.Id, context.CancellationToken))
        {
            pod = _pods.Find(pod.Id) ?? throw Fail.NotFound($"pod sandbox {request.PodSandboxId} not found");
            if (pod.OwnsCgroup && request.Resources is not null)
            {
                try { CgroupManagers.Create(pod.CgroupPath).Create(resources); } // idempotent; the cgroup may not exist before a container
                catch (IOException e) { throw Fail.FailedPrecondition($"update pod cgroup {pod.CgroupPath}: {e.Message}"); }
            }
            var config = PodSandboxConfig.Parser.ParseFrom(pod.Config);
            config.Linux ??= new LinuxPodSandboxConfig();
            if (request.Resources is not null) config.Linux.Resources = request.Resources;
            if (request.Overhead is not null) config.Linux.Overhead = request.Overhead;
            _pods.Update(pod.Id, p => p with { Config = config.ToByteArray() });
        }
        return new UpdatePodSandboxResourcesResponse();
    }
}
