using CriRuntime.Cri.V1;
using CriRuntime.Shim.Client;
using CriRuntime.State;

namespace CriRuntime.Containers;

/// <summary>Learns when containers exit: for each running container one wait on its shim's
/// control socket; when it returns, the exit is recorded in the container store (so it outlives
/// the shim) and a CONTAINER_STOPPED event is published. At start the daemon resumes watching
/// every container it had, and records exits that happened while it was down.</summary>
public sealed partial class ExitMonitor(ContainerStore containers, ShimRunner shims, ContainerEvents events, ILogger<ExitMonitor> log)
{
    private readonly CancellationTokenSource _stopping = new();

    public void Watch(ContainerRecord c) => _ = Task.Run(() => WatchAsync(c.Id));

    public void StopAll() => _stopping.Cancel();

    private async Task WatchAsync(string id)
    {
        try
        {
            var c = containers.Find(id);
            if (c is null) return;
            var final = await shims.WaitAsync(c.StateDir, _stopping.Token);
            await RecordExitAsync(id, final);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested) { }
        catch (Exception e)
        {
            LogWatchFailed(e, id);
        }
    }

    /// <summary>Copies the shim's final state into the record, once, and tells subscribers.</summary>
    public async Task<ContainerRecord?> RecordExitAsync(string id, ShimState? final)
    {
        using (await containers.LockAsync(id, CancellationToken.None))
        {
            var c = containers.Find(id);
            if (c is null || c.State == ContainerPhase.Exited) return c;
            var finished = final?.FinishedAt ?? DateTimeOffset.UtcNow;
            var updated = c with
            {
                State = ContainerPhase.Exited,
                StartedAtNanos = final?.StartedAt is { } s ? Nanos(s) : c.StartedAtNanos,
                FinishedAtNanos = Nanos(finished),
                ExitCode = final?.ExitCode ?? 255,
                Reason = final?.Reason ?? "Unknown",
                Message = final?.Message ?? (final is null ? "the container's shim disappeared without recording an exit" : ""),
            };
            containers.Save(updated);
            events.Publish(new ContainerEventResponse
            {
                ContainerId = id,
                ContainerEventType = ContainerEventType.ContainerStoppedEvent,
                CreatedAt = updated.FinishedAtNanos,
            });
            LogExited(id, updated.ExitCode, updated.Reason);
            return updated;
        }
    }

    /// <summary>At daemon start: every container that was running is watched again (or its exit,
    /// which happened while we were down, recorded).</summary>
    public async Task ResumeAsync(CancellationToken ct)
    {
        foreach (var c in containers.All.Where(c => c.State == ContainerPhase.Running))
        {
            var state = await shims.StateAsync(c.StateDir, ct);
            if (state is { Status: ShimStatus.Running }) Watch(c);
            else await RecordExitAsync(c.Id, state);
        }
    }

    public static long Nanos(DateTimeOffset t) => (t - DateTimeOffset.UnixEpoch).Ticks * 100;

    [LoggerMessage(EventId = 500, Level = LogLevel.Information, Message = "container {ContainerId} exited with {ExitCode} ({Reason})")]
    private partial void LogExited(string containerId, int exitCode, string reason);

    [LoggerMessage(EventId = 501, Level = LogLevel.Warning, Message = "watching container {ContainerId} failed")]
    private partial void LogWatchFailed(Exception e, string containerId);
}
