using System.Collections.Concurrent;
using System.Diagnostics;
using CriRuntime.Checkpoint;
using CriRuntime.Config;
using CriRuntime.Cri;
using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using CriRuntime.State;

namespace CriRuntime.Migration;

/// <summary>Both ends of a cold migration (docs/migration.md): the source's freeze, dump,
/// transfer and remote restore, run in the background so that Abort can stop it and a repeated
/// Migrate can follow it; what Commit and Abort undo; and what a restarted daemon does with a
/// migration it did not finish. The RPC files (Migration/Api, Migration/Peer) validate and call
/// this.</summary>
public sealed partial class MigrationController(
    CriRuntimeConfig config,
    MigrationStore store,
    PodSandboxStore pods,
    ContainerStore containers,
    Pods.PodSandboxController podCtl,
    CriRuntimeService cri,
    Cgroups.ICgroupManagerFactory cgroups,
    TimeProvider clock,
    Network.CniNetwork network,
    Kernel.IHostKernel kernel,
    ILogger<MigrationController> log)
{
    private readonly NetworkLock _lock = new(network, kernel);
    private readonly PeerTls? _tls = PeerTls.Load(config.Migration);
    private readonly ConcurrentDictionary<string, Running> _running = new(StringComparer.Ordinal);
    /// <summary>Target: the `criu lazy-pages` daemons of a migration, killed by cancelling.</summary>
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _lazyPages = new(StringComparer.Ordinal);
    /// <summary>Target: per lazy migration, why its pages cannot all arrive, or null once they did
    /// (and PagesArrived is recorded); completes when every `criu lazy-pages` exited.</summary>
    private readonly ConcurrentDictionary<string, Task<string?>> _paging = new(StringComparer.Ordinal);

    public MigrationStore Store => store;
    public CriRuntimeService Cri => cri;
    public Pods.PodSandboxController PodCtl => podCtl;
    public PeerTls? Tls => _tls;
    public PodSandboxStore Pods => pods;

    /// <summary>A source migration in progress: its work, its cancellation (Abort) and its progress.</summary>
    public sealed class Running(Task work, CancellationTokenSource cancel)
    {
        public Task Work { get; } = work;
        public CancellationTokenSource Cancel { get; } = cancel;
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private MigrationStatus? _latest;

        public MigrationStatus? Latest => Volatile.Read(ref _latest);
        /// <summary>Completes at the next change of <see cref="Latest"/> (or when the work ends).</summary>
        public Task Changed => Volatile.Read(ref _changed).Task;

        public void Publish(MigrationStatus status)
        {
            Volatile.Write(ref _latest, status);
            Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        }
    }

    public Running? RunningFor(string id) => _running.GetValueOrDefault(id);

    public static MigrationStatus Status(MigrationRecord m) => new()
    {
        MigrationId = m.Id,
        Role = m.Side == MigrationSide.Source ? MigrationRole.Source : MigrationRole.Target,
        Phase = m.Phase,
        PodSandboxId = m.PodId,
        TargetAddress = m.TargetAddress,
        BytesSent = m.Side == MigrationSide.Source ? m.BytesSent : m.BytesReceived,
        BytesTotal = m.BytesTotal,
        DowntimeMs = m.DowntimeMs,
        DumpMs = m.DumpMs,
        TransferMs = m.TransferMs,
        RestoreMs = m.RestoreMs,
        Error = m.Error,
        TargetPodSandboxId = m.TargetPodId,
        KeptIp = m.KeptIp,
    };

    public PeerClient Peer(string address) => new(address, PeerTls.Required(_tls));

    /// <summary>Starts the source side of <paramref name="m"/> (recorded by the caller) in the
    /// background; the returned work ends with the migration DONE or FAILED.</summary>
    public Running StartSource(MigrationRecord m) => Start(m, RunSourceAsync);

    /// <summary>Starts, in the background, the decision on a source left TRANSFERRED by a restart
    /// (<see cref="ResolveTransferredAsync"/>); the returned work ends DONE, FAILED, or still
    /// TRANSFERRED when the target cannot be reached.</summary>
    public Running StartResolve(MigrationRecord m) => Start(m, m.Phase == MigrationPhase.Paging ? ResolvePagingAsync : ResolveTransferredAsync);

    /// <summary>A lazy source left PAGING by a restart (its page servers were killed as leftovers):
    /// the target is asked whether every page arrived anyway (a page server can finish while its
    /// daemon is down). Yes: DONE (Commit or Abort decides). A target that answers they cannot
    /// (its lazy-pages failed when the page servers died, or it removed its copy at its own
    /// restart): it is told to abort and the source is thawed (FAILED). A target that cannot be
    /// reached decides nothing: the source stays frozen and PAGING (Migrate again, or Abort).</summary>
    private async Task ResolvePagingAsync(MigrationRecord m, Running running, CancellationToken ct)
    {
        using var peer = Peer(m.TargetAddress);
        try
        {
            await peer.PagesArrivedAsync(m.Id, ct);
        }
        catch (CriException e) when (e.Kind is ErrorKind.FailedPrecondition or ErrorKind.NotFound or ErrorKind.InvalidArgument)
        {
            throw await FailSourceAsync(m.Id, peer, askedToRestore: true,
                new CriException(ErrorKind.Aborted, $"the daemon restarted while the target pulled the pod's memory pages, and they did not all arrive ({e.Message})", e));
        }
        catch (Exception e) when (e is CriException or HttpRequestException or IOException)
        {
            throw Fail.Unavailable($"migration {m.Id}: target {m.TargetAddress} cannot tell whether every memory page arrived ({e.Message}); the source pod stays frozen: Migrate again, or Abort", e);
        }
        m = Phase(m.Id, MigrationPhase.Done);
        store.DiscardCheckpoint(m.Id);
        running.Publish(Status(m));
        Log.Done(log, m.Id, m.PodId, m.TargetAddress, m.DowntimeMs, m.BytesSent);
    }

    private Running Start(MigrationRecord m, Func<MigrationRecord, Running, CancellationToken, Task> run)
    {
        var cancel = new CancellationTokenSource();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Running? running = null;
        var work = Task.Run(async () =>
        {
            await gate.Task;
            try { await run(m, running!, cancel.Token); }
            finally { running!.Publish(Status(store.Find(m.Id) ?? m)); }
        });
        running = new Running(work, cancel);
        _running[m.Id] = running;
        running.Publish(Status(m));
        gate.SetResult();
        _ = work.ContinueWith(_ => { _running.TryRemove(new(m.Id, running)); cancel.Dispose(); }, TaskScheduler.Default);
        return running;
    }

    private MigrationRecord Phase(string id, string phase, Func<MigrationRecord, MigrationRecord>? more = null) =>
        store.Update(id, m => (more?.Invoke(m) ?? m) with { Phase = phase });

    private async Task RunSourceAsync(MigrationRecord m, Running running, CancellationToken ct)
    {
        using var peer = Peer(m.TargetAddress);
        var askedToRestore = false;
        LazyDump? lazy = null;
        try
        {
            // Before any downtime: the target must have prepared this migration, and its pod must
            // have this pod's addresses unless the caller accepted a new one.
            var check = await peer.CheckAsync(m.Id, ct);
            var sourceIps = pods.Find(m.PodId)?.Ips ?? [];
            var keptIp = SameIps(sourceIps, check.PodIps);
            // A pod without an address of its own (the host's network) has none to keep.
            if (!keptIp && sourceIps.Count > 0 && !m.AllowNewIp)
                throw Fail.FailedPrecondition($"target {m.TargetAddress}: its pod has the address {Show(check.PodIps)}, not this pod's {Show(sourceIps)}, " +
                    "so the pod's TCP connections cannot be kept (PrepareTarget with pod_ips, on a CNI network that declares the \"ips\" capability and has the address free; or Migrate with allow_new_ip)");
            if (m.Mode == "lazy")
            {
                // The page servers listen only on the address the target reaches this node on.
                var (host, port) = PeerClient.Split(m.TargetAddress);
                // Not stopped by the cancellation (Abort) itself: the page servers hold the tasks
                // seized in a thawed cgroup, and go only once it is frozen again (below).
                lazy = new LazyDump(await LazyDump.LocalAddressTowardsAsync(host, port, ct), LazyDump.TlsArgs(config.Migration, server: true), CancellationToken.None);
            }

            var pod = pods.Find(m.PodId) ?? throw Fail.NotFound($"pod sandbox {m.PodId} not found");
            if (pod.State != PodState.Ready) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is not ready");
            var selected = containers.InPod(pod.Id).Where(c => c.State == ContainerPhase.Running).ToList();
            if (selected.Count == 0) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} has no running container to migrate");
            // The freeze is this migration's from here on: written before the first cgroup is frozen,
            // as the links of the network lock before they are set down.
            IReadOnlyList<string> links = keptIp ? _lock.Links(pod.Id) : [];
            m = Phase(m.Id, MigrationPhase.Freezing, r => r with
            {
                FrozenCgroups = [.. selected.Select(c => c.CgroupsPath)], KeptIp = keptIp, LockedLinks = [.. links],
            });
            running.Publish(Status(m));
            _lock.Lock(links);
            var dir = store.CheckpointDir(m.Id);
            store.DiscardCheckpoint(m.Id);
            Directory.CreateDirectory(dir);
            // The freeze itself starts inside, once CRIU has started up: the downtime counts from there.
            // CRIU's own network lock is redundant here: a kept address has its links down (above),
            // a new one has its connections closed at the restore.
            var frozenFor = await cri.CheckpointPodIntoAsync(pod, selected, dir, config.Checkpoint.DumpTimeout, leaveFrozen: true, ct, lazy,
                networkLockedOutside: true);
            var frozenAt = Stopwatch.GetTimestamp() - (long)(frozenFor.TotalSeconds * Stopwatch.Frequency);
            var dumpMs = (long)frozenFor.TotalMilliseconds;
            Testing.FaultPoints.Crash(Testing.FaultPoints.MigrateAfterDump);
            Testing.FaultPoints.Hold(Testing.FaultPoints.MigrateAfterDump, ct);

            var files = CheckpointFiles(dir);
            var total = files.Sum(f => new FileInfo(Path.Combine(dir, f)).Length);
            m = Phase(m.Id, MigrationPhase.Transferring, r => r with { DumpMs = dumpMs, BytesTotal = total });
            running.Publish(Status(m));
            var transferAt = Stopwatch.GetTimestamp();
            var lastPublished = 0L;
            await peer.TransferAsync(m.Id, dir, files, sent =>
            {
                Testing.FaultPoints.Crash(Testing.FaultPoints.MigrateMidTransfer);
                Testing.FaultPoints.Hold(Testing.FaultPoints.MigrateMidTransfer, ct);
                if (sent - lastPublished < 4 * PeerClient.ChunkBytes && sent < total) return;
                lastPublished = sent;
                var s = Status(m);
                s.BytesSent = sent;
                running.Publish(s);
            }, ct);
            var transferMs = (long)Stopwatch.GetElapsedTime(transferAt).TotalMilliseconds;
            m = Phase(m.Id, MigrationPhase.Transferred, r => r with { BytesSent = total, TransferMs = transferMs });
            running.Publish(Status(m));

            askedToRestore = true;
            var restoreAt = Stopwatch.GetTimestamp();
            var restored = await peer.RestoreAsync(m.Id, PageServers(lazy), keptIp, ct);
            var now = Stopwatch.GetTimestamp();
            Testing.FaultPoints.Crash(Testing.FaultPoints.MigrateAfterRestore);
            Testing.FaultPoints.Hold(Testing.FaultPoints.MigrateAfterRestore, ct);
            m = Phase(m.Id, lazy is null ? MigrationPhase.Done : MigrationPhase.Paging, r => r with
            {
                TargetPodId = restored.PodSandboxId,
                RestoreMs = (long)Stopwatch.GetElapsedTime(restoreAt, now).TotalMilliseconds,
                DowntimeMs = (long)Stopwatch.GetElapsedTime(frozenAt, now).TotalMilliseconds,
            });
            if (lazy is not null)
            {
                // The target runs the pod; its memory follows. The source stays frozen, and Commit
                // waits for DONE, until every page server exited successfully: the target has it all.
                running.Publish(Status(m));
                Testing.FaultPoints.Crash(Testing.FaultPoints.MigratePaging);
                Log.Paging(log, m.Id, m.PodId, m.TargetAddress, m.DowntimeMs, lazy.Servers.Count, lazy.Address);
                // Both ends must see every page through: the page servers exiting 0 (sent), and the
                // target recording that its lazy-pages all exited 0 (arrived). A page server can finish
                // while the target's daemon is down (CRIU runs in its own process group), and that
                // target's restart removes its copy, having seen nothing: DONE only on its word.
                using var asking = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var arrived = peer.PagesArrivedAsync(m.Id, asking.Token);
                var served = lazy.WaitAsync(ct);
                try
                {
                    if (await Task.WhenAny(arrived, served) == arrived && !arrived.IsCompletedSuccessfully) await arrived;
                    if (await served is { } why)
                        throw Fail.Unavailable($"the memory pages did not all reach the target: {why}");
                    await arrived;
                }
                finally
                {
                    await asking.CancelAsync();
                    _ = arrived.ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
                }
                m = Phase(m.Id, MigrationPhase.Done);
            }
            store.DiscardCheckpoint(m.Id);
            Log.Done(log, m.Id, m.PodId, m.TargetAddress, m.DowntimeMs, m.BytesSent);
        }
        catch (Exception e) when (e is CriException or OperationCanceledException or HttpRequestException or IOException or System.Net.Sockets.SocketException)
        {
            // Page servers still serving hold the tasks seized, with their cgroups thawed (CRIU thaws
            // a cgroup to seize its tasks, and freezes it again only when it exits normally): killed
            // as they are, they would let the tasks run while the target may run its copy, and
            // before the target was told to abort (or when it cannot be told, and the source must
            // stay frozen). So the cgroups are frozen again first; the tasks stop in the freezer as
            // the kill detaches them, and only FailSourceAsync thaws them.
            if (lazy is not null)
            {
                FreezeAgain(store.Find(m.Id) ?? m, cgroups, log);
                await lazy.StopAsync();
            }
            throw await FailSourceAsync(m.Id, peer, askedToRestore, e);
        }
        finally
        {
            lazy?.Dispose();
        }
    }

    private static IEnumerable<PageServer> PageServers(LazyDump? lazy) =>
        lazy?.Servers.Select(s => new PageServer { ContainerName = s.ContainerName, Address = $"{(lazy.Address.Contains(':') ? $"[{lazy.Address}]" : lazy.Address)}:{s.Port}" }) ?? [];

    /// <summary>A source left TRANSFERRED (its daemon restarted after asking the target to restore,
    /// before recording the answer): the target is asked again. Restore is idempotent, so a target
    /// that runs the pod answers at once and the migration is DONE (Commit or Abort decides, as
    /// after any Migrate); a target that restores it now does the same. A target that answers it
    /// does not run the pod (it removed it at its own restart, or cannot restore it) leaves the pod
    /// to the source: the target is told to abort and the source is thawed (FAILED). A target that
    /// cannot be reached decides nothing: the source stays frozen and TRANSFERRED (Migrate again,
    /// or Abort, which needs the target too).</summary>
    private async Task ResolveTransferredAsync(MigrationRecord m, Running running, CancellationToken ct)
    {
        using var peer = Peer(m.TargetAddress);
        // A lazy migration's page servers died with the daemon: whatever the target restored can
        // never get the rest of its memory, so it is removed and the source thawed (frozen still
        // when the target cannot be told).
        if (m.Mode == "lazy")
            throw await FailSourceAsync(m.Id, peer, askedToRestore: true,
                new CriException(ErrorKind.Aborted, "the daemon restarted while the target restored the pod lazily: its memory pages cannot reach it any more"));
        PeerResponse restored;
        try
        {
            restored = await peer.RestoreAsync(m.Id, [], m.KeptIp, ct);
        }
        catch (CriException e) when (e.Kind is ErrorKind.FailedPrecondition or ErrorKind.NotFound or ErrorKind.InvalidArgument)
        {
            throw await FailSourceAsync(m.Id, peer, askedToRestore: false, e);
        }
        catch (Exception e) when (e is CriException or HttpRequestException or IOException)
        {
            throw Fail.Unavailable($"migration {m.Id}: target {m.TargetAddress} cannot tell whether it runs the pod ({e.Message}); the source pod stays frozen: Migrate again, or Abort", e);
        }
        m = Phase(m.Id, MigrationPhase.Done, r => r with { TargetPodId = restored.PodSandboxId });
        store.DiscardCheckpoint(m.Id);
        running.Publish(Status(m));
        Log.Done(log, m.Id, m.PodId, m.TargetAddress, m.DowntimeMs, m.BytesSent);
    }

    /// <summary>A source migration that failed: the target removes what it made, then the source
    /// is thawed and runs on. When the target was asked to start the pod and cannot be reached to
    /// remove it, the source stays frozen (never two running copies): Abort retries.</summary>
    private async Task<CriException> FailSourceAsync(string id, PeerClient peer, bool askedToRestore, Exception e)
    {
        var reason = e is OperationCanceledException ? "cancelled (Abort)" : e.Message;
        var kind = e switch
        {
            CriException c => c.Kind,
            OperationCanceledException => ErrorKind.Aborted,
            _ => ErrorKind.Unavailable,
        };
        var targetGone = true;
        try { await peer.AbortAsync(id, CancellationToken.None); }
        catch (CriException a) when (a.Kind == ErrorKind.NotFound) { }
        catch (Exception a) when (a is CriException or OperationCanceledException or HttpRequestException)
        {
            targetGone = false;
            Log.TargetAbortFailed(log, id, a.Message);
        }
        var m = store.Find(id);
        if (m is null) return new CriException(kind, reason, e);
        if (targetGone || !askedToRestore)
        {
            ResumeSource(m);
            reason += "; the source pod was thawed";
        }
        else
            reason += "; the target could not be told to remove its pod, so the source pod stays frozen: Abort again";
        store.DiscardCheckpoint(id);
        Phase(id, MigrationPhase.Failed, r => r with { Error = reason, FailedKind = kind, FrozenCgroups = targetGone || !askedToRestore ? [] : r.FrozenCgroups });
        Log.Failed(log, id, m.PodId, reason);
        return new CriException(kind, reason, e);
    }

    /// <summary>The pod checkpoint's files, relative to <paramref name="dir"/>: pod.dump last, so
    /// the target has every archive when it sees the pod's description.</summary>
    private static List<string> CheckpointFiles(string dir) =>
    [
        .. Directory.GetFiles(Path.Combine(dir, PodArchive.ContainersDirectory)).Order(StringComparer.Ordinal)
            .Select(f => $"{PodArchive.ContainersDirectory}/{Path.GetFileName(f)}"),
        PodArchive.PodDumpFile,
    ];

    /// <summary>The source runs on as it was: its network lock lifted, then every cgroup thawed.</summary>
    private void ResumeSource(MigrationRecord m)
    {
        _lock.Unlock(m.LockedLinks);
        ThawSource(m);
    }

    /// <summary>Both lists name the same addresses (neither empty).</summary>
    public static bool SameIps(IEnumerable<string> a, IEnumerable<string> b)
    {
        var x = a.Select(Normalize).Order(StringComparer.Ordinal).ToList();
        var y = b.Select(Normalize).Order(StringComparer.Ordinal).ToList();
        return x.Count > 0 && x.SequenceEqual(y);
        static string Normalize(string ip) => System.Net.IPAddress.TryParse(ip.Split('/')[0], out var a) ? a.ToString() : ip;
    }

    private static string Show(IEnumerable<string> ips) => ips.Any() ? string.Join(", ", ips) : "(none)";

    /// <summary>Thaws every cgroup the source migration froze (a cgroup that is gone needs nothing).</summary>
    public void ThawSource(MigrationRecord m)
    {
        foreach (var path in m.FrozenCgroups)
        {
            try { cgroups.Create(path).Thaw(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                if (e is Cgroups.CgroupException { Errno: 2 } or DirectoryNotFoundException or FileNotFoundException) continue;
                throw;
            }
        }
    }

    /// <summary>Commit on the source: the frozen containers are killed without running again
    /// (SIGKILL to every task while frozen, then thawed: the kill is taken before any user-space
    /// instruction), the pod is stopped and removed, the target told.</summary>
    public async Task<MigrationRecord> CommitSourceAsync(MigrationRecord m, CancellationToken ct)
    {
        // Recorded first: from here on the target's copy is the pod, and a restart finishes the rest.
        if (m.Phase != MigrationPhase.Committed) m = Phase(m.Id, MigrationPhase.Committed);
        Testing.FaultPoints.Crash(Testing.FaultPoints.CommitAfterRecord);
        return await FinishCommitAsync(m, ct);
    }

    /// <summary>The source's half of a COMMITTED migration whose frozen pod is still there
    /// (FrozenCgroups not yet cleared): kill, remove, tell the target. Each step is idempotent.</summary>
    private async Task<MigrationRecord> FinishCommitAsync(MigrationRecord m, CancellationToken ct)
    {
        var frozen = m.FrozenCgroups.Select(cgroups.Create).ToList();
        foreach (var cg in frozen)
            foreach (var pid in Gone(cg.Processes, []))
                _ = Interop.Libc.Kill(pid, Interop.Libc.SIGKILL); // ESRCH: already gone
        ThawSource(m);
        // Whatever is left (nothing, unless a task escaped the freeze) goes the usual way.
        foreach (var cg in frozen) Gone(() => { cg.KillAll(); return 0; }, 0);
        await podCtl.RemoveAsync(m.PodId, ct);
        try
        {
            // Bounded: a restart finishing a commit must not wait on a target that does not answer.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            using var peer = Peer(m.TargetAddress);
            await peer.CommitAsync(m.Id, timeout.Token);
        }
        catch (Exception e) when (e is CriException or HttpRequestException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            // The target runs the pod either way; only its record stays STARTED.
            Log.TargetCommitFailed(log, m.Id, e.Message);
        }
        return Phase(m.Id, MigrationPhase.Committed, r => r with { FrozenCgroups = [] });
    }

    /// <summary><paramref name="read"/>'s result, or <paramref name="whenGone"/> when the cgroup is gone.</summary>
    private static T Gone<T>(Func<T> read, T whenGone)
    {
        try { return read(); }
        catch (Exception e) when (e is Cgroups.CgroupException { Errno: 2 } or DirectoryNotFoundException or FileNotFoundException) { return whenGone; }
    }

    /// <summary>Abort on the source: the target removes its pod first, then the source is thawed.</summary>
    public async Task<MigrationRecord> AbortSourceAsync(MigrationRecord m, CancellationToken ct)
    {
        using (var peer = Peer(m.TargetAddress))
        {
            try { await peer.AbortAsync(m.Id, ct); }
            catch (CriException e) when (e.Kind == ErrorKind.NotFound) { }
            catch (Exception e) when (e is HttpRequestException or CriException { Kind: ErrorKind.Unavailable })
            {
                // Frozen by this migration (or maybe running on the target: TRANSFERRED, DONE): the
                // target must remove its copy before the source may run again.
                if (m.FrozenCgroups.Count > 0 || m.Phase is MigrationPhase.Transferred or MigrationPhase.Paging or MigrationPhase.Done)
                    throw Fail.Unavailable($"target {m.TargetAddress}: {e.Message}; the source pod stays as it is: Abort again", e);
                // The source runs the pod (a migration that failed and thawed it): the target holds at
                // most a pod it never started, which its own Abort or restart removes.
                store.DiscardCheckpoint(m.Id);
                return Phase(m.Id, MigrationPhase.Aborted, r => r with
                {
                    Error = $"target {m.TargetAddress} could not be told to remove its unstarted pod ({e.Message}): Abort it there, or its restart removes it",
                });
            }
        }
        ResumeSource(m);
        store.DiscardCheckpoint(m.Id);
        return Phase(m.Id, MigrationPhase.Aborted, r => r with { FrozenCgroups = [] });
    }

    /// <summary>Abort on the target (the source's, or the operator's): the prepared pod and
    /// whatever was restored into it are removed.</summary>
    public async Task<MigrationRecord> RemoveTargetAsync(MigrationRecord m, CancellationToken ct, string? reason = null)
    {
        StopLazyPages(m.Id);
        // Restored established, its sockets are the peer's connections too: closing them (the
        // containers killed) must not reach the peer, whose connection the source resumes.
        if (m.KeepConnections) LockPodNetwork(m.PodId);
        _paging.TryRemove(m.Id, out _);
        if (m.PodId.Length > 0) await podCtl.RemoveAsync(m.PodId, ct);
        store.DiscardCheckpoint(m.Id);
        return Phase(m.Id, MigrationPhase.Aborted, r => r with { Error = reason ?? r.Error });
    }

    /// <summary>Sets the pod's links on this node's side down (<see cref="NetworkLock"/>): nothing
    /// its sockets send leaves the node any more. For a pod about to be removed.</summary>
    public void LockPodNetwork(string podId) => _lock.Lock(_lock.Links(podId));

    /// <summary>Target, between a restored container's create and its start, when the pod kept the
    /// source's addresses: its restore (bundle/restore.json) brings the TCP connections back
    /// established instead of closed.</summary>
    public void RestoreConnections(string containerId)
    {
        var c = containers.Find(containerId) ?? throw Fail.NotFound($"container {containerId} not found");
        var file = Path.Combine(c.BundleDir, Shim.Client.RestoreSpec.FileName);
        var plan = System.Text.Json.JsonSerializer.Deserialize(File.ReadAllBytes(file), Shim.Client.ShimJsonContext.Default.RestoreSpec)
            ?? throw new InvalidDataException($"{file}: empty");
        Files.AtomicFile.Write(file, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(RestorePlan.WithTcpEstablished(plan), Shim.Client.ShimJsonContext.Default.RestoreSpec), durable: false);
    }

    /// <summary>Target of a lazy migration, between the restored container's create and its start:
    /// its restore (bundle/restore.json) gets `--lazy-pages`, and `criu lazy-pages` is started in
    /// the restore's work directory, pulling the pages from the source's page server at
    /// <paramref name="pageServer"/>; returns once it listens for the restore. It exits when it
    /// has injected every page (the source's dump exits then too), or is killed by
    /// <see cref="StopLazyPages"/>. <paramref name="alongside"/> runs while lazy-pages starts up,
    /// once restore.json has `--lazy-pages` (the restored container's shim, which reads it).</summary>
    public async Task<Task<Checkpoint.CriuResult>> StartLazyPagesAsync(string migrationId, string containerId, string pageServer, Func<Task>? alongside = null)
    {
        var c = containers.Find(containerId) ?? throw Fail.NotFound($"container {containerId} not found");
        var file = Path.Combine(c.BundleDir, Shim.Client.RestoreSpec.FileName);
        var plan = System.Text.Json.JsonSerializer.Deserialize(File.ReadAllBytes(file), Shim.Client.ShimJsonContext.Default.RestoreSpec)
            ?? throw new InvalidDataException($"{file}: empty");
        plan = RestorePlan.WithLazyPages(plan);
        Files.AtomicFile.Write(file, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(plan, Shim.Client.ShimJsonContext.Default.RestoreSpec), durable: false);
        var (host, port) = PeerClient.Split(pageServer);
        IReadOnlyList<string> args = [.. RestorePlan.LazyPagesArgs(plan, host, port), .. LazyDump.TlsArgs(config.Migration, server: false)];
        var stop = _lazyPages.GetOrAdd(migrationId, _ => new CancellationTokenSource());
        var criu = cri.Criu;
        var beside = alongside?.Invoke() ?? Task.CompletedTask;
        Task<Checkpoint.CriuResult> done;
        try { done = await criu.StartReadyAsync(criu.Require(), args, LazyDump.ServeTimeout, RestorePlan.ArgValue(plan, "--work-dir"), stop.Token); }
        catch
        {
            await beside.ContinueWith(_ => { }, TaskScheduler.Default);
            throw;
        }
        await beside;
        _ = done.ContinueWith(t => Log.LazyPagesExited(log, migrationId, containerId, t.Result.ExitCode, t.Result.TimedOut), TaskScheduler.Default);
        return done;
    }

    /// <summary>Target, once a lazy restore's containers started: watches their `criu lazy-pages`
    /// daemons and records PagesArrived when every one exited 0 (from then on the target's copy
    /// has all its memory and a restart keeps it).</summary>
    public void WatchPages(string migrationId, IReadOnlyList<Task<Checkpoint.CriuResult>> daemons) =>
        _paging[migrationId] = RecordPagesAsync(migrationId, daemons);

    private async Task<string?> RecordPagesAsync(string id, IReadOnlyList<Task<Checkpoint.CriuResult>> daemons)
    {
        string? why = null;
        try
        {
            foreach (var r in await Task.WhenAll(daemons))
                if (r.ExitCode != 0 || r.TimedOut) why ??= $"criu lazy-pages exited {r.ExitCode}{(r.TimedOut ? " (killed, or timed out)" : "")}";
        }
        catch (Exception e) when (e is CriException or IOException or InvalidOperationException) { why = $"criu lazy-pages failed: {e.Message}"; }
        using (await store.LockAsync(id, CancellationToken.None))
        {
            var m = store.Find(id);
            if (m is not { Phase: MigrationPhase.Started or MigrationPhase.Committed })
                return why ?? $"migration {id} is {m?.Phase ?? "gone"} on this node";
            if (why is not null) return why;
            store.Update(id, r => r with { PagesArrived = true });
        }
        Log.PagesArrived(log, id);
        return null;
    }

    /// <summary>Target: returns once every memory page of the migration's lazy restore arrived
    /// (at once for a cold one, or one whose pages arrived before); FailedPrecondition when they
    /// cannot all arrive (a lazy-pages failed or was killed, or no lazy-pages runs for it here: a
    /// restart removed the copy).</summary>
    public async Task WaitPagesArrivedAsync(MigrationRecord m, CancellationToken ct)
    {
        if (!m.Lazy || m.PagesArrived) return;
        if (!_paging.TryGetValue(m.Id, out var paging))
            throw Fail.FailedPrecondition($"migration {m.Id}: no criu lazy-pages runs for it on this node: its memory pages cannot all arrive");
        Testing.FaultPoints.Crash(Testing.FaultPoints.RestorePaging);
        if (await paging.WaitAsync(ct) is { } why)
            throw Fail.FailedPrecondition($"migration {m.Id}: the memory pages did not all arrive: {why}");
    }

    /// <summary>Kills the migration's `criu lazy-pages` daemons still running (target).</summary>
    public void StopLazyPages(string migrationId)
    {
        if (_lazyPages.TryRemove(migrationId, out var stop)) stop.Cancel();
    }

    /// <summary>At start, before the previous daemon's CRIU runs are killed as leftovers: every
    /// cgroup a source migration keeps frozen is frozen again. A lazy dump's page server holds the
    /// tasks seized with their cgroup thawed (CRIU thaws it to seize the tasks and freezes it again
    /// only when it exits normally): killed, it would let them run beside the target's copy.
    /// Frozen first, they stop in the freezer as the kill detaches them.</summary>
    public static void RefreezeSources(MigrationStore store, Cgroups.ICgroupManagerFactory cgroups, ILogger log)
    {
        foreach (var m in store.All)
        {
            if (m.Side != MigrationSide.Source || m.FrozenCgroups.Count == 0
                || m.Phase is not (MigrationPhase.Transferred or MigrationPhase.Paging or MigrationPhase.Done or MigrationPhase.Failed or MigrationPhase.Committed))
                continue;
            FreezeAgain(m, cgroups, log);
        }
    }

    /// <summary>Freezes every cgroup the source migration <paramref name="m"/> recorded frozen
    /// (before its page servers are killed, which would release their seized tasks in a thawed
    /// cgroup).</summary>
    private static void FreezeAgain(MigrationRecord m, Cgroups.ICgroupManagerFactory cgroups, ILogger log)
    {
        foreach (var path in m.FrozenCgroups)
        {
            try { cgroups.Create(path).Freeze(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone (the pod was removed) needs nothing; anything else is logged, and the
                // migration's failure or recovery decides as before.
                if (e is Cgroups.CgroupException { Errno: 2 } or DirectoryNotFoundException or FileNotFoundException) continue;
                Log.RefreezeFailed(log, m.Id, path, e.Message);
            }
        }
    }

    /// <summary>At start, before serving: a source migration that did not finish is thawed (its pod
    /// runs on) unless the target may already run the pod (TRANSFERRED, DONE: kept frozen for
    /// Commit or Abort); a target migration whose containers never started is removed.</summary>
    public async Task RecoverAsync(CancellationToken ct)
    {
        foreach (var m in store.All)
        {
            if (m.Side == MigrationSide.Source && m.Phase is MigrationPhase.Freezing or MigrationPhase.Transferring)
            {
                ResumeSource(m);
                store.DiscardCheckpoint(m.Id);
                Phase(m.Id, MigrationPhase.Failed, r => r with { Error = $"the daemon restarted in phase {m.Phase}; the source pod was thawed", FrozenCgroups = [] });
                Log.Recovered(log, m.Id, "thawed the source pod");
            }
            else if (m.Side == MigrationSide.Source && m.Phase == MigrationPhase.Paging)
            {
                // Its page servers outlived the daemon and were killed as leftovers (Criu.RemoveLeftovers):
                // unless they had served every page, the target's copy can never complete. In the
                // background, the target says which (the source stays frozen meanwhile).
                StartResolve(m);
                Log.Recovered(log, m.Id, "asking the target whether every memory page arrived (the source stays frozen meanwhile)");
            }
            else if (m.Side == MigrationSide.Source && m.Phase == MigrationPhase.Transferred)
            {
                // In the background: the target may be restarting too, and its restore may take a while.
                StartResolve(m);
                Log.Recovered(log, m.Id, "asking the target whether it runs the pod (the source stays frozen meanwhile)");
            }
            else if (m.Side == MigrationSide.Source && m.Phase == MigrationPhase.Committed && m.FrozenCgroups.Count > 0)
            {
                await FinishCommitAsync(m, ct);
                Log.Recovered(log, m.Id, "finished the commit: removed the frozen source pod");
            }
            else if (m.Side == MigrationSide.Target && MigrationPhase.TargetNotStarted(m.Phase))
            {
                await RemoveTargetAsync(m, ct);
                Log.Recovered(log, m.Id, "removed the target pod that never started");
            }
            else if (MigrationPhase.TargetPagesIncomplete(m))
            {
                // Its criu lazy-pages died with the daemon or was killed as a leftover: the missing
                // pages can never arrive (and a closed userfaultfd would hand the process zero pages).
                // The source still holds the only full copy, frozen: its Abort (or failure) thaws it.
                await RemoveTargetAsync(m, ct, "the daemon restarted before every memory page of the lazy restore arrived; the copy here was removed (the source still holds the pod: Abort it there)");
                Log.Recovered(log, m.Id, "removed the lazily restored pod whose memory pages had not all arrived");
            }
        }
    }

    public DateTimeOffset Now => clock.GetUtcNow();

    /// <summary>Target: where a Restore's time went (Debug; the bench prints it).</summary>
    internal void LogRestoreSteps(string id, Containers.StepTimes steps) => Log.RestoreSteps(log, id, steps.ToString());

    private static partial class Log
    {
        [LoggerMessage(EventId = 1300, Level = LogLevel.Information, Message = "migration {Id}: pod {PodId} runs on {Target}: downtime {DowntimeMs} ms, {Bytes} bytes sent")]
        public static partial void Done(ILogger logger, string id, string podId, string target, long downtimeMs, long bytes);

        [LoggerMessage(EventId = 1301, Level = LogLevel.Warning, Message = "migration {Id} of pod {PodId} failed: {Reason}")]
        public static partial void Failed(ILogger logger, string id, string podId, string reason);

        [LoggerMessage(EventId = 1302, Level = LogLevel.Error, Message = "migration {Id}: the target could not be told to abort: {Reason}")]
        public static partial void TargetAbortFailed(ILogger logger, string id, string reason);

        [LoggerMessage(EventId = 1303, Level = LogLevel.Warning, Message = "migration {Id}: the target could not be told of the commit: {Reason}")]
        public static partial void TargetCommitFailed(ILogger logger, string id, string reason);

        [LoggerMessage(EventId = 1306, Level = LogLevel.Information, Message = "migration {Id}: pod {PodId} runs on {Target} after {DowntimeMs} ms of downtime; its memory pages follow from {Servers} page servers on {Address}")]
        public static partial void Paging(ILogger logger, string id, string podId, string target, long downtimeMs, int servers, string address);

        [LoggerMessage(EventId = 1305, Level = LogLevel.Information, Message = "migration {Id}: criu lazy-pages of container {ContainerId} exited {ExitCode} (killed: {Killed})")]
        public static partial void LazyPagesExited(ILogger logger, string id, string containerId, int exitCode, bool killed);

        [LoggerMessage(EventId = 1308, Level = LogLevel.Error, Message = "migration {Id}: cannot freeze {Cgroup} again before its page servers (or the leftover CRIU runs) are killed: {Reason}")]
        public static partial void RefreezeFailed(ILogger logger, string id, string cgroup, string reason);

        [LoggerMessage(EventId = 1307, Level = LogLevel.Information, Message = "migration {Id}: every memory page of the lazy restore arrived")]
        public static partial void PagesArrived(ILogger logger, string id);

        [LoggerMessage(EventId = 1309, Level = LogLevel.Debug, Message = "migration {Id}: restored on this node: {Steps}")]
        public static partial void RestoreSteps(ILogger logger, string id, string steps);

        [LoggerMessage(EventId = 1304, Level = LogLevel.Information, Message = "migration {Id}, left by the previous daemon: {What}")]
        public static partial void Recovered(ILogger logger, string id, string what);
    }
}
