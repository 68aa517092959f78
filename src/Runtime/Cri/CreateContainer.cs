using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Mounts the image as an overlay root, writes the OCI bundle and the container's
    /// record; its shim starts at StartContainer, as containerd's task does. A retry with the same
    /// (pod, name, attempt) gets the same container.</summary>
    public override async Task<CreateContainerResponse> CreateContainer(CreateContainerRequest request, ServerCallContext context)
    {
        var config = request.Config ?? throw Fail.InvalidArgument("config: required");
        if (string.IsNullOrEmpty(config.Metadata?.Name)) throw Fail.InvalidArgument("config.metadata.name: required");
        if (string.IsNullOrEmpty(config.Image?.Image)) throw Fail.InvalidArgument("config.image.image: required");
        // Before anything is made: what the shim would refuse later, refused here naming the CRI field.
        ResourceLimits.From(config.Linux?.Resources, "config.linux.resources");
        var pod = _pods.Get(request.PodSandboxId);
        if (pod.State != PodState.Ready) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is not ready");

        var id = await _containerCtl.CreateAsync(request, pod, context.CancellationToken);
        return new CreateContainerResponse { ContainerId = id };
    }
}
