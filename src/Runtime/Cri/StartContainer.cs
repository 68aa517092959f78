using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Shim.Client;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task<StartContainerResponse> StartContainer(StartContainerRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        ShimState? died = null;
        using (await _containers.LockAsync(c.Id, context.CancellationToken))
        {
            c = _containers.Find(c.Id) ?? throw Fail.NotFound($"container {request.ContainerId} not found");
            if (c.State != ContainerPhase.Created)
                throw Fail.FailedPrecondition($"container {c.Id} is {c.State.ToString().ToLowerInvariant()}, not created{(c.Message.Length > 0 ? ": " + c.Message : "")}");
            try
            {
                var state = await _shims.StartAsync(c.StateDir, CancellationToken.None);
                c = c with { State = ContainerPhase.Running, StartedAtNanos = state.StartedAt is { } s ? ExitMonitor.Nanos(s) : NowNanos() };
                // Created → running describes a live process: after a reboot the container has
                // exited whichever phase the record kept, so this update needs no fsync (kill -9 of
                // the daemon cannot lose it: the rename is atomic and the page cache outlives us).
                _containers.Save(c, durable: false);
                // Under the lock: the exit monitor, watching since CreateContainer, records a quick
                // exit only after this, so STARTED always precedes STOPPED.
                _events.Publish(new ContainerEventResponse { ContainerId = c.Id, ContainerEventType = ContainerEventType.ContainerStartedEvent, CreatedAt = c.StartedAtNanos });
            }
            catch (Exception e) when (e is ShimGoneException or IOException && !ShimClient.IsShimAlive(c.StateDir))
            {
                // The shim died before the exit monitor told us (it will, and find this recorded).
                died = await _shims.StateAsync(c.Id, c.StateDir, CancellationToken.None);
                if (died.Status != ShimStatus.Stopped) throw;
            }
        }
        if (died is not null)
        {
            var exited = await _exits.RecordExitAsync(c.Id, died);
            throw Fail.FailedPrecondition($"container {c.Id} is exited, not created: {exited?.Message ?? died.Message}");
        }
        return new StartContainerResponse();
    }
}
