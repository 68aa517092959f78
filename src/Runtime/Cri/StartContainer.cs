using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task<StartContainerResponse> StartContainer(StartContainerRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        using (await _containers.LockAsync(c.Id, context.CancellationToken))
        {
            c = _containers.Find(c.Id) ?? throw Fail.NotFound($"container {request.ContainerId} not found");
            if (c.State != ContainerPhase.Created)
                throw Fail.FailedPrecondition($"container {c.Id} is {c.State.ToString().ToLowerInvariant()}, not created");
            var state = await _shims.StartAsync(c.StateDir, CancellationToken.None);
            c = c with { State = ContainerPhase.Running, StartedAtNanos = state.StartedAt is { } s ? ExitMonitor.Nanos(s) : NowNanos() };
            // Created → running describes a live process: after a reboot the container has
            // exited whichever phase the record kept, so this update needs no fsync (kill -9 of
            // the daemon cannot lose it: the rename is atomic and the page cache outlives us).
            _containers.Save(c, durable: false);
        }
        _events.Publish(new ContainerEventResponse { ContainerId = c.Id, ContainerEventType = ContainerEventType.ContainerStartedEvent, CreatedAt = c.StartedAtNanos });
        _exits.Watch(c);
        return new StartContainerResponse();
    }
}
