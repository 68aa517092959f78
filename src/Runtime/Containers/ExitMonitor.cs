using System.Collections.Concurrent;
using CriRuntime.Cgroups;
using CriRuntime.Errors;
using CriRuntime.Interop;
using CriRuntime.Cri.V1;
using CriRuntime.Shim.Client;
using CriRuntime.State;

namespace CriRuntime.Containers;

/// <summary>What the container controller needs of the exit monitor: watch a new container, and
/// record an exit it learnt first (once; a second record of the same exit returns the first).</summary>
public interface IContainerExits
{
    void Watch(ContainerRecord c);
    Task<ContainerRecord?> RecordExitAsync(string id, ShimState final);
    /// <summary><see cref="RecordExitAsync"/> for a caller that holds the container's lock.</summary>
    ContainerRecord? RecordExitHeld(string id, ShimState final);
    /// <summary>At RemoveContainer (lock held): the cgroup of a container whose shim is dead,
    /// if it is still there, is emptied and removed; a failure fails the remove.</summary>
    void RemoveOrphanedCgroup(ContainerRecord c);
    /// <summary>After StopContainer's wait: the container's shim is given up to
    /// <paramref name="grace"/> to exit (it does once it has recorded the exit), so that the
    /// exit is recorded with the shim gone and what the container held released then.</summary>
    Task ShimExitedAsync(string id, TimeSpan grace, CancellationToken ct);
    /// <summary>What this daemon released when it recorded the exit (nothing after a restart):
    /// RemoveContainer (lock held) does the rest.</summary>
    ExitRelease Released(string id);
    /// <summary>At RemoveContainer: the container is gone; so is what was kept about it.</summary>
    void Forget(string id);
}

/// <summary>What an exited container no longer holds: its root file system mount (and the tmpfs
/// mounts of a restore) is unmounted, its cgroup removed.</summary>
public readonly record struct ExitRelease(bool Rootfs, bool Cgroup);

/// <summary>Learns when containers exit: for each container, from the start of its shim on (at
/// StartContainer), its shim's pidfd (a shim exits once its container has and its exit is
/// recorded in state.json); when it fires, the final state is taken and the exit recorded
/// in the container store (so it outlives the shim) and a CONTAINER_STOPPED event is published.
/// At start the daemon resumes watching every container with a shim, and records exits that
/// happened while it was down; a created container without a shim has nothing to watch (unless
/// the host restarted: its rootfs mount is gone then, and it is recorded exited).
/// When the exit is recorded with the shim gone, what the container held while it ran is released
/// at once, as containerd deletes a task when it exits: its rootfs is unmounted and its cgroup
/// (the shim's, removed by the shim itself unless it was killed) checked gone. RemoveContainer,
/// the kubelet's later call, is left the records and directories.</summary>
public sealed partial class ExitMonitor(ContainerStore containers, ShimRunner shims, ContainerEvents events, IContainerRootfs rootfs, ILogger<ExitMonitor> log) : IContainerExits
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly ProcessExitWatcher _shimExits = new();
    /// <summary>Per watched container: completed when its shim's pidfd fires.</summary>
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _shimGone = new();
    private readonly ConcurrentDictionary<string, ExitRelease> _released = new();

    /// <summary>Waits for the shim's exit through its pidfd (one thread for all of them), then
    /// takes the final state as a wait would (the shim is gone: its state file, or that it died).
    /// A shim that cannot be watched so (already gone, or its pid no longer this container's shim)
    /// is waited for at once.</summary>
    public void Watch(ContainerRecord c)
    {
        // The callbacks keep the id only: the record they were given is out of date once the
        // container runs, and one is kept per watched container.
        var id = c.Id;
        if (ShimClient.OpenShimPidfd(c.StateDir) is { } pidfd)
        {
            var gone = _shimGone[id] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _shimExits.Watch(pidfd, () =>
            {
                gone.TrySetResult();
                _ = WatchAsync(id);
            });
        }
        else _ = Task.Run(() => WatchAsync(id));
    }

    public async Task ShimExitedAsync(string id, TimeSpan grace, CancellationToken ct)
    {
        if (!_shimGone.TryGetValue(id, out var gone)) return; // not watched through a pidfd
        try { await gone.Task.WaitAsync(grace, ct); }
        catch (TimeoutException) { } // still exiting: the exit is recorded now, the rest released at remove
    }

    public ExitRelease Released(string id) => _released.GetValueOrDefault(id);

    public void Forget(string id)
    {
        _shimGone.TryRemove(id, out _);
        _released.TryRemove(id, out _);
    }

    public void StopAll()
    {
        _stopping.Cancel();
        _shimExits.Dispose();
    }

    private async Task WatchAsync(string id)
    {
        try
        {
            var c = containers.Find(id);
            if (c is null) return;
            var final = await shims.WaitAsync(id, c.StateDir, _stopping.Token);
            await RecordExitAsync(id, final);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested) { }
        catch (Exception e)
        {
            LogWatchFailed(e, id);
        }
    }

    /// <summary>Copies the shim's final state into the record, once, and tells subscribers. The
    /// rootfs is unmounted first, and when the shim is gone, whatever it left in the container's
    /// cgroup is killed and the cgroup removed (a shim that exits normally does that itself; one
    /// killed with -9 cannot): the cgroup is the shim's, and this is only the fallback for a dead
    /// owner (docs/shim-protocol.md, "Who owns what").</summary>
    public async Task<ContainerRecord?> RecordExitAsync(string id, ShimState final)
    {
        using (await containers.LockAsync(id, CancellationToken.None))
            return RecordExitHeld(id, final);
    }

    public ContainerRecord? RecordExitHeld(string id, ShimState final)
    {
        {
            var c = containers.Find(id);
            if (c is null) return null;
            if (c.State == ContainerPhase.Exited)
            {
                // Recorded while the shim still ran (StopContainer's wait ran out): now it is gone.
                if (!Released(id).Cgroup) Release(c);
                return c;
            }
            var finished = final.FinishedAt ?? DateTimeOffset.UtcNow;
            Release(c);
            var updated = containers.Transition(id, ContainerPhase.Exited, r => r with
            {
                StartedAtNanos = final.StartedAt is { } s ? Nanos(s) : r.StartedAtNanos,
                FinishedAtNanos = Nanos(finished),
                ExitCode = final.ExitCode ?? ShimClient.UnknownExitCode,
                Reason = final.Reason ?? "Unknown",
                Message = final.Message ?? "",
            });
            events.Publish(new ContainerEventResponse
            {
                ContainerId = id,
                ContainerEventType = ContainerEventType.ContainerStoppedEvent,
                CreatedAt = updated.FinishedAtNanos,
            });
            LogExited(id, updated.ExitCode, updated.Reason, updated.Message);
            return updated;
        }
    }

    /// <summary>The exit of a shim killed with -9 can be recorded while the dying shim still
    /// looks alive, or the cleanup then can fail (a process stuck exiting): its cgroup outlives it.
    /// RemoveContainer is the last chance: the cgroup goes, or the remove fails naming why, and
    /// the kubelet, which retries removes, tries again. A shim still alive owns its cgroup. A shim
    /// seen gone when the exit was recorded is not looked for again; the cgroup is (one look per
    /// hierarchy when it is gone, as it should be).</summary>
    public void RemoveOrphanedCgroup(ContainerRecord c)
    {
        if (c.CgroupsPath.Length == 0 || !Released(c.Id).Cgroup && ShimClient.IsShimAlive(c.StateDir)) return;
        try { CgroupManagers.Create(c.CgroupsPath).Destroy(); }
        catch (IOException e)
        {
            throw Fail.Unavailable($"container {c.Id}: its shim is gone and its cgroup {c.CgroupsPath} could not be removed: {e.Message}");
        }
    }

    /// <summary>At a recorded exit (lock held): the rootfs is unmounted, as nothing runs in it any
    /// more, and, once the shim is gone, whatever it left in the cgroup is killed and the cgroup
    /// removed. What fails here is logged and left to RemoveContainer, which fails then.</summary>
    private void Release(ContainerRecord c)
    {
        var released = Released(c.Id);
        if (!released.Rootfs)
        {
            try
            {
                rootfs.UnmountBundle(c.BundleDir);
                released = released with { Rootfs = true };
            }
            catch (Exception e) when (e is KernelException or IOException) { LogReleaseFailed(e, c.Id, "rootfs"); }
        }
        if (!released.Cgroup && !ShimClient.IsShimAlive(c.StateDir))
        {
            try
            {
                if (c.CgroupsPath.Length > 0) CgroupManagers.Create(c.CgroupsPath).Destroy();
                released = released with { Cgroup = true };
            }
            catch (IOException e) { LogCgroupCleanupFailed(e, c.Id, c.CgroupsPath); }
        }
        _released[c.Id] = released;
    }

    /// <summary>At daemon start: every container that was created or running is watched again,
    /// or its exit, which happened while we were down (its shim may have died with it), recorded.</summary>
    public async Task ResumeAsync(CancellationToken ct)
    {
        HashSet<string>? mounts = null;
        foreach (var c in containers.All.Where(c => c.State is ContainerPhase.Running or ContainerPhase.Created))
        {
            if (c.State == ContainerPhase.Created && !ContainerController.HasShim(c))
            {
                // Never started: its rootfs, mounted at CreateContainer, is what StartContainer
                // needs. Gone only when the host restarted (the state dir is a tmpfs there too).
                mounts ??= MountPoints();
                if (!mounts.Contains(Path.Combine(c.BundleDir, "rootfs")))
                    await RecordExitAsync(c.Id, new ShimState
                    {
                        Id = c.Id,
                        Status = ShimStatus.Stopped,
                        FinishedAt = DateTimeOffset.UtcNow,
                        ExitCode = ShimClient.UnknownExitCode,
                        Reason = "Error",
                        Message = "the host restarted before the container was started: its root file system is no longer mounted",
                    });
                continue;
            }
            var state = await shims.StateAsync(c.Id, c.StateDir, ct);
            if (state.Status == ShimStatus.Stopped) await RecordExitAsync(c.Id, state);
            else Watch(c);
        }
    }

    private static HashSet<string> MountPoints() =>
        [.. Checkpoint.DumpPlan.ParseMountInfo(File.ReadAllText("/proc/self/mountinfo")).Select(m => m.MountPoint)];

    public static long Nanos(DateTimeOffset t) => (t - DateTimeOffset.UnixEpoch).Ticks * 100;

    [LoggerMessage(EventId = 500, Level = LogLevel.Information, Message = "container {ContainerId} exited with {ExitCode} ({Reason}) {Message}")]
    private partial void LogExited(string containerId, int exitCode, string reason, string message);

    [LoggerMessage(EventId = 502, Level = LogLevel.Warning, Message = "container {ContainerId}: removing cgroup {CgroupPath} after its shim died failed")]
    private partial void LogCgroupCleanupFailed(Exception e, string containerId, string cgroupPath);

    [LoggerMessage(EventId = 503, Level = LogLevel.Warning, Message = "container {ContainerId}: releasing its {What} at exit failed (RemoveContainer tries again)")]
    private partial void LogReleaseFailed(Exception e, string containerId, string what);

    [LoggerMessage(EventId = 501, Level = LogLevel.Warning, Message = "watching container {ContainerId} failed")]
    private partial void LogWatchFailed(Exception e, string containerId);
}
