using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<ContainerStatusResponse> ContainerStatus(ContainerStatusRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        var image = _images.Find(c.ImageId);
        var status = new Cri.V1.ContainerStatus
        {
            Id = c.Id,
            Metadata = c.Metadata,
            State = ToCri(c.State),
            CreatedAt = c.CreatedAtNanos,
            StartedAt = c.StartedAtNanos,
            FinishedAt = c.FinishedAtNanos,
            ExitCode = c.ExitCode,
            // The kubelet creates containers by image id and shows these in the pod's status as
            // image and imageID: like containerd, the image's first tag and its repo digest when
            // the image is still stored, else what the container was created from.
            Image = new ImageSpec { Image = image?.RepoTags.FirstOrDefault() ?? c.ImageRef, UserSpecifiedImage = c.UserSpecifiedImage },
            ImageRef = image?.RepoDigests.FirstOrDefault() ?? c.ImageId,
            ImageId = c.ImageId,
            Reason = c.Reason,
            Message = c.Message,
            LogPath = c.LogPath,
        };
        status.Labels.Add(c.Labels);
        status.Annotations.Add(c.Annotations);
        status.Mounts.AddRange(c.Mounts.Select(m => m.ToCri()));
        if (c.User is { } u)
        {
            status.User = new ContainerUser { Linux = new LinuxContainerUser { Uid = u.Uid, Gid = u.Gid } };
            status.User.Linux.SupplementalGroups.AddRange(u.SupplementalGroups.Select(g => (long)g));
        }
        if (c.Resources is { } r) status.Resources = new ContainerResources { Linux = r.ToCri() };
        return Task.FromResult(new ContainerStatusResponse { Status = status });
    }

    private static Cri.V1.ContainerState ToCri(State.ContainerPhase s) => s switch
    {
        State.ContainerPhase.Created => Cri.V1.ContainerState.ContainerCreated,
        State.ContainerPhase.Running => Cri.V1.ContainerState.ContainerRunning,
        State.ContainerPhase.Exited => Cri.V1.ContainerState.ContainerExited,
        _ => Cri.V1.ContainerState.ContainerUnknown,
    };
}
