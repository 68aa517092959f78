using CriRuntime.Checkpoint;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>CheckpointPod's options: "timeout", the whole call's limit as a duration ("30s",
    /// "500ms"); the call's deadline applies as well. Any other key is InvalidArgument.</summary>
    private static readonly string[] CheckpointPodOptions = ["timeout"];

    private PodCheckpointer? _podCheckpointer;
    private PodCheckpointer PodCheckpointerTool => _podCheckpointer ??=
        new PodCheckpointer(new FreezeLedger(Criu.ScratchRoot(_config.Root)), Cgroups.HostCgroupManagers.Instance, _log);

    /// <summary>Checkpoints the pod's running containers (all, or those of container_ids) as one
    /// instant: all are frozen through their cgroups before CRIU captures any, and all are thawed
    /// before this returns, whatever happened (docs/checkpoint.md, "CheckpointPod"). Writes pod.dump
    /// and containers/NAME.tar into the caller's empty output_path; on failure nothing is left there.</summary>
    public override async Task<CheckpointPodResponse> CheckpointPod(CheckpointPodRequest request, ServerCallContext context)
    {
        if (request.OutputPath.Length == 0) throw Fail.InvalidArgument("output_path: required");
        if (!Path.IsPathRooted(request.OutputPath)) throw Fail.InvalidArgument($"output_path: '{request.OutputPath}' must be an absolute path");
        var output = Path.GetFullPath(request.OutputPath);
        var outputInfo = new DirectoryInfo(output);
        if (outputInfo.LinkTarget is not null) throw Fail.InvalidArgument($"output_path: {output} is a symlink");
        if (!outputInfo.Exists) throw Fail.InvalidArgument($"output_path: directory {output} does not exist");
        if (outputInfo.EnumerateFileSystemInfos().Any()) throw Fail.InvalidArgument($"output_path: directory {output} is not empty");
        var timeout = InForce.Checkpoint.DumpTimeout;
        foreach (var (key, value) in request.Options)
        {
            if (!CheckpointPodOptions.Contains(key))
                throw Fail.InvalidArgument($"options: unknown key \"{key}\" (known: {string.Join(", ", CheckpointPodOptions)})");
            if (!Config.Duration.TryParse(value, out timeout) || timeout <= TimeSpan.Zero)
                throw Fail.InvalidArgument($"options[timeout]: \"{value}\" is not a positive duration (\"30s\", \"500ms\")");
        }

        var pod = _pods.Get(request.PodSandboxId);
        if (pod.State != PodState.Ready) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is not ready");
        var selected = request.ContainerIds.Count == 0
            ? [.. _containers.InPod(pod.Id).Where(c => c.State == ContainerPhase.Running)]
            : request.ContainerIds.Select(id => _containers.TryGet(id) is { } c && c.PodId == pod.Id ? c
                : throw Fail.NotFound($"container_ids: container {id} not found in pod sandbox {pod.Id}")).DistinctBy(c => c.Id).ToList();
        if (selected.Count == 0) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} has no running container to checkpoint");
        if (selected.GroupBy(c => c.Name).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw Fail.FailedPrecondition($"pod sandbox {pod.Id}: two selected containers are named {twice.Key}");
        if (selected.FirstOrDefault(c => !PodArchive.IsSafeName(c.Name)) is { } unsafeName)
            throw Fail.FailedPrecondition($"container {unsafeName.Id}: its name '{unsafeName.Name}' cannot name a file of the archive");

        await CheckpointPodIntoAsync(pod, selected, output, timeout, leaveFrozen: false, context.CancellationToken);
        return new CheckpointPodResponse();
    }

    /// <summary>The pod checkpoint of <paramref name="selected"/> (containers of <paramref name="pod"/>,
    /// validated by the caller) written into the empty directory <paramref name="output"/>: frozen
    /// as one, dumped, and thawed (CheckpointPod), or, with <paramref name="leaveFrozen"/>, left
    /// frozen once every dump succeeded (a migration's source: it thaws them on Abort or failure,
    /// and owns the record of the freeze from then on). Returns how long the pod has been frozen
    /// when this returns (with <paramref name="leaveFrozen"/>; else how long it was frozen): the
    /// freeze starts only once every container's CRIU has started up, not at this call.
    /// <paramref name="lazy"/> (a lazy migration, with <paramref name="leaveFrozen"/>): the dumps
    /// leave the memory pages out and each CRIU serves them afterwards. <paramref name="networkLockedOutside"/>:
    /// a migration's (<see cref="DumpPlan.Args"/>): CRIU does not lock the network itself.</summary>
    internal async Task<TimeSpan> CheckpointPodIntoAsync(PodSandboxRecord pod, IReadOnlyList<ContainerRecord> selected, string output,
        TimeSpan timeout, bool leaveFrozen, CancellationToken callToken, LazyDump? lazy = null, bool networkLockedOutside = false)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(callToken);
        deadline.CancelAfter(timeout);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        // Every selected container's lock, in id order (no deadlock with another pod checkpoint),
        // held until the archives are written: no stop, remove or second checkpoint in between.
        var locks = new List<IDisposable>();
        var frozen = TimeSpan.Zero;
        try
        {
            foreach (var c in selected.OrderBy(c => c.Id, StringComparer.Ordinal))
                locks.Add(await _containers.LockAsync(c.Id, callToken));
            var targets = new List<DumpTarget>();
            foreach (var c in selected)
                targets.Add(await DumpTargetAsync(_containers.Find(c.Id) ?? throw Fail.NotFound($"container {c.Id} not found")));

            var layout = Cgroups.CgroupManagers.Layout;
            var members = targets.Select(t => new PodCheckpointer.Member(t.Container.Id, t.Container.CgroupsPath)).ToList();
            IReadOnlyList<DumpedContainer> dumps;
            try
            {
                dumps = await PodCheckpointerTool.DumpFrozenAsync(members,
                    (i, gate, ct) => DumpAsync(targets[i], DumpPlan.FreezerDir(layout, members[i].CgroupPath), timeout, ct, lazy: lazy, gate: gate,
                        networkLockedOutside: networkLockedOutside),
                    DiscardDump, deadline.Token, t => frozen = t, leaveFrozen);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                throw Fail.DeadlineExceeded($"checkpoint of pod sandbox {pod.Id}: {(callToken.IsCancellationRequested ? "the call's deadline" : $"options[timeout] {Config.Duration.Format(timeout)}")} passed; every container was thawed");
            }
            catch (CriException e) when (e.Kind == ErrorKind.DeadlineExceeded)
            {
                throw Fail.DeadlineExceeded($"{e.Message}; every container of pod sandbox {pod.Id} was thawed");
            }
            var dumpsEnded = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                var podConfig = PodSandboxConfig.Parser.ParseFrom(pod.Config);
                var podDump = new PodDump
                {
                    Id = pod.Id, Name = pod.Name, Namespace = pod.Namespace, Uid = pod.Uid, Attempt = pod.Attempt,
                    RuntimeHandler = pod.RuntimeHandler, CheckpointedAt = _clock.GetUtcNow(),
                    Labels = new(podConfig.Labels), Annotations = new(podConfig.Annotations),
                    Containers = [.. dumps.Select(d => new PodDumpContainer { Name = d.Container.Name, Id = d.Container.Id, Archive = PodArchive.ArchiveOf(d.Container.Name) })],
                };
                // A migration's archive (the pod left frozen) is sent and discarded: if this node
                // reboots meanwhile, the frozen pod is gone with it, and the archive is no use.
                var durable = !leaveFrozen;
                await Task.Run(() => PodArchive.Write(output, podDump, (c, path) => WriteArchive(dumps.Single(d => d.Container.Id == c.Id), path, durable: durable), durable),
                    CancellationToken.None);
            }
            finally
            {
                foreach (var d in dumps) DiscardDump(d);
            }
            if (leaveFrozen) PodCheckpointLog.LeftFrozen(_log, pod.Id, dumps.Count);
            PodCheckpointLog.Checkpointed(_log, pod.Id, dumps.Count, output, frozen.TotalMilliseconds,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (leaveFrozen) frozen += System.Diagnostics.Stopwatch.GetElapsedTime(dumpsEnded);
        }
        finally
        {
            foreach (var l in locks) l.Dispose();
        }
        return frozen;
    }

    private static partial class PodCheckpointLog
    {
        [LoggerMessage(EventId = 1211, Level = LogLevel.Information, Message = "checkpointed pod {PodId} ({Containers} containers) to {Output}: frozen {FrozenMilliseconds} ms, total {Milliseconds} ms")]
        public static partial void Checkpointed(ILogger logger, string podId, int containers, string output, double frozenMilliseconds, double milliseconds);

        [LoggerMessage(EventId = 1212, Level = LogLevel.Information, Message = "pod {PodId}: its {Containers} dumped containers stay frozen (migration)")]
        public static partial void LeftFrozen(ILogger logger, string podId, int containers);
    }
}
