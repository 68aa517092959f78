using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Removes a container, killing it first if it still runs. Idempotent.</summary>
    public override async Task<RemoveContainerResponse> RemoveContainer(RemoveContainerRequest request, ServerCallContext context)
    {
        var c = _containers.TryGet(request.ContainerId);
        if (c is null) return new RemoveContainerResponse();
        await RemoveContainerAsync(c, context.CancellationToken);
        return new RemoveContainerResponse();
    }

    private async Task RemoveContainerAsync(ContainerRecord c, CancellationToken ct)
    {
        await StopContainerAsync(c, TimeSpan.Zero, ct);
        using (await _containers.LockAsync(c.Id, ct))
        {
            if (_containers.Find(c.Id) is null) return;
            RootfsMount.Unmount(Path.Combine(c.BundleDir, "rootfs"));
            if (Directory.Exists(c.StateDir)) Directory.Delete(c.StateDir, recursive: true);
            _containers.Delete(c.Id);
            _imageUsage.Release(c.ImageId, c.Id);
        }
        _events.Publish(new ContainerEventResponse { ContainerId = c.Id, ContainerEventType = ContainerEventType.ContainerDeletedEvent, CreatedAt = NowNanos() });
    }
}
