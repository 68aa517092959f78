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
    /// index and its <see cref="DumpGate"/>) while all are frozen, thaws every member whatever
    /// happened, and returns the dumps in member order. Every dump is started before the freeze
    /// and arrives at its gate when it is about to seize its tasks (CRIU's pre-dump: after its
    /// start-up, the kernel feature probes that take most of a second here); the members are
    /// frozen once every dump arrived, then the gates open one at a time, each dump finishing
    /// before the next is let through. So the pod is frozen only for the dumps' own work, not for
    /// CRIU starting. On failure the dumps made so far are handed to <paramref name="discard"/>,
    /// and a dump still waiting at its gate sees it cancelled.
    /// The time from the first freeze to the last thaw is reported in <paramref name="frozenFor"/>.
    /// With <paramref name="leaveFrozen"/>, members whose dumps all succeeded stay frozen (a
    /// migration's source) and their freeze record is forgotten: the caller has recorded the
    /// freeze itself, before this call, and thaws them; <paramref name="frozenFor"/> is then the
    /// time until the last dump. On failure every member is thawed as always.</summary>
    public async Task<IReadOnlyList<TDump>> DumpFrozenAsync<TDump>(IReadOnlyList<Member> members,
        Func<int, DumpGate, CancellationToken, Task<TDump>> dump, Action<TDump> discard, CancellationToken ct, Action<TimeSpan>? frozenFor = null,
        bool leaveFrozen = false)
    {
        var record = ledger.Record([.. members.Select(m => m.CgroupPath)]);
        var managers = members.Select(m => cgroups.Create(m.CgroupPath)).ToList();
        var gates = members.Select(_ => new DumpGate()).ToList();
        var running = new List<Task<TDump>>();
        var dumps = new List<TDump>();
        var ok = false;
        var frozenAt = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            for (var i = 0; i < members.Count; i++)
            {
                var (index, gate) = (i, gates[i]);
                running.Add(Task.Run(() => dump(index, gate, ct), CancellationToken.None));
            }
            // Every dump at its gate, or one of them ended before it got there (a failure).
            var arrived = Task.WhenAll(gates.Select(g => g.Arrived));
            while (!arrived.IsCompleted)
            {
                await Task.WhenAny(arrived, Task.WhenAny(running)).WaitAsync(ct);
                if (running.FirstOrDefault(t => t.IsCompleted) is { } early)
                {
                    await early; // its error, if it failed
                    throw new InvalidOperationException("a dump finished before the pod was frozen: it did not wait at its gate");
                }
            }
            frozenAt = System.Diagnostics.Stopwatch.GetTimestamp();
            foreach (var m in managers)
            {
                ct.ThrowIfCancellationRequested();
                m.Freeze();
            }
            FaultPoints.Crash(leaveFrozen ? FaultPoints.MigrateAfterFreeze : FaultPoints.CheckpointPodAfterFreeze);
            for (var i = 0; i < members.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                gates[i].Open();
                dumps.Add(await running[i].WaitAsync(ct));
            }
            ok = true;
            return dumps;
        }
        finally
        {
            if (!ok)
            {
                // Dumps still waiting at their gates give up; the others are waited for (a dump
                // holds its tasks seized until it ends), and whatever they made is discarded.
                foreach (var g in gates) g.Cancel();
                for (var i = dumps.Count; i < running.Count; i++)
                {
                    try { dumps.Add(await running[i]); }
                    catch (Exception) when (running[i].IsFaulted || running[i].IsCanceled) { }
                }
            }
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

    /// <summary>Where a dump of <see cref="DumpFrozenAsync"/> waits, about to seize its tasks, until
    /// every member of the pod is frozen.</summary>
    public sealed class DumpGate
    {
        private readonly TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>A gate that is open already: a dump of one container that needs no pod-wide freeze.</summary>
        public static DumpGate Opened()
        {
            var g = new DumpGate();
            g.Open();
            return g;
        }

        public Task Arrived => _arrived.Task;

        /// <summary>Called by the dump when it is about to seize its tasks: completes once every
        /// member is frozen; cancelled when the pod checkpoint failed meanwhile.</summary>
        public Task ArriveAsync()
        {
            _arrived.TrySetResult();
            return _open.Task;
        }

        internal void Open() => _open.TrySetResult();
        internal void Cancel() => _open.TrySetCanceled();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1210, Level = LogLevel.Error, Message = "checkpoint: could not thaw container {ContainerId} (cgroup {Cgroup}): {Reason}; the next daemon start retries")]
        public static partial void ThawFailed(ILogger logger, string containerId, string cgroup, string reason);
    }
}
