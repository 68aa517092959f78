using CriRuntime.Cgroups;
using CriRuntime.Testing;

namespace CriRuntime.Checkpoint;

/// <summary>The freeze-dump-thaw of CheckpointPod (docs/checkpoint.md, "CheckpointPod"): every
/// selected container is frozen through its cgroup (recorded in the <see cref="FreezeLedger"/>
/// first) before any is captured, so the dumps are one consistent instant of the pod; then each is
/// dumped; then all are thawed, always: on success, on error and when the deadline passes. The
/// dump itself is the caller's (CRIU through CheckpointContainer's steps), so this is unit-tested
/// with fakes.</summary>
public sealed partial class PodCheckpointer(FreezeLedger ledger, ICgroupManagerFactory cgroups, ILogger log)
{
    /// <summary>A container to checkpoint: its id and cgroup path (relative to the hierarchy roots).</summary>
    public sealed record Member(string ContainerId, string CgroupPath);

    /// <summary>Freezes every member, dumps each with <paramref name="dump"/> (given the member's
    /// index) while all are frozen, thaws every member whatever happened, and returns the dumps in
    /// member order. On failure the dumps made so far are handed to <paramref name="discard"/>.
    /// The time from the first freeze to the last thaw is reported in <paramref name="frozenFor"/>.
    /// With <paramref name="leaveFrozen"/>, members whose dumps all succeeded stay frozen (a
    /// migration's source) and their freeze record is forgotten: the caller has recorded the
    /// freeze itself, before this call, and thaws them; <paramref name="frozenFor"/> is then the
    /// time until the last dump. On failure every member is thawed as always.</summary>
    public async Task<IReadOnlyList<TDump>> DumpFrozenAsync<TDump>(IReadOnlyList<Member> members,
        Func<int, CancellationToken, Task<TDump>> dump, Action<TDump> discard, CancellationToken ct, Action<TimeSpan>? frozenFor = null,
        bool leaveFrozen = false)
    {
        var record = ledger.Record([.. members.Select(m => m.CgroupPath)]);
        var managers = members.Select(m => cgroups.Create(m.CgroupPath)).ToList();
        var dumps = new List<TDump>();
        var ok = false;
        var frozenAt = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            foreach (var m in managers)
            {
                ct.ThrowIfCancellationRequested();
                m.Freeze();
            }
            FaultPoints.Crash(leaveFrozen ? FaultPoints.MigrateAfterFreeze : FaultPoints.CheckpointPodAfterFreeze);
            for (var i = 0; i < members.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                dumps.Add(await dump(i, ct));
            }
            ok = true;
            return dumps;
        }
        finally
        {
            if (ok && leaveFrozen)
            {
                frozenFor?.Invoke(System.Diagnostics.Stopwatch.GetElapsedTime(frozenAt));
                FreezeLedger.Forget(record);
            }
            else
                ThawAll();
        }

        void ThawAll()
        {
            // Every member, frozen or not yet (thawing a thawed cgroup is a no-op): a freeze that
            // failed halfway may have left its cgroup FREEZING.
            var thawed = true;
            for (var i = 0; i < managers.Count; i++)
            {
                try { managers[i].Thaw(); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    thawed = false;
                    Log.ThawFailed(log, members[i].ContainerId, members[i].CgroupPath, e.Message);
                }
            }
            frozenFor?.Invoke(System.Diagnostics.Stopwatch.GetElapsedTime(frozenAt));
            // A record whose thaw failed stays: the next daemon start tries again.
            if (thawed) FreezeLedger.Forget(record);
            if (!ok) foreach (var d in dumps) discard(d);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1210, Level = LogLevel.Error, Message = "checkpoint: could not thaw container {ContainerId} (cgroup {Cgroup}): {Reason}; the next daemon start retries")]
        public static partial void ThawFailed(ILogger logger, string containerId, string cgroup, string reason);
    }
}
