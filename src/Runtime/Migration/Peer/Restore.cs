using CriRuntime.Checkpoint;
using CriRuntime.Cri;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Peer;

public sealed partial class MigrationPeerService
{
    /// <summary>Restores the received pod checkpoint into the sandbox PrepareTarget made: each
    /// container created from its archive (with the config PrepareTarget was given for its name)
    /// and started, so the downtime ends when this answers. Repeated once STARTED, it answers the
    /// same. On failure the containers it made are removed again and the migration stays RECEIVED
    /// (the source then aborts, which removes the pod).</summary>
    public override async Task<PeerResponse> Restore(PeerRequest request, ServerCallContext context)
    {
        var m = Prepared(request.MigrationId, MigrationPhase.Received, MigrationPhase.Started);
        var steps = new Containers.StepTimes();
        using (await Store.LockAsync(m.Id, context.CancellationToken))
        {
            m = Store.Find(m.Id)!;
            if (m.Phase == MigrationPhase.Started) return new PeerResponse { PodSandboxId = m.PodId, Bytes = m.BytesReceived };
            if (!ctl.Cri.RestoreEnabled)
                throw Fail.FailedPrecondition("restoring from checkpoints is off on the target ([checkpoint] restore = false)");
            var dir = Store.CheckpointDir(m.Id);
            PodDump podDump;
            try { podDump = PodArchive.Read(dir); }
            catch (InvalidDataException e) { throw Fail.InvalidArgument($"the pod checkpoint received: {e.Message}"); }
            var configs = m.ContainerConfigs.Select(ContainerConfig.Parser.ParseFrom).ToList();
            var byName = CriRuntimeService.MatchContainerConfigs(podDump, configs);
            var pageServers = PageServers(request, podDump);
            var podConfig = PodSandboxConfig.Parser.ParseFrom(m.PodConfig);
            // Recorded before any socket is restored: whoever removes this pod locks its network first.
            if (request.KeepConnections && !m.KeepConnections) m = Store.Update(m.Id, r => r with { KeepConnections = true });
            steps.Mark("read");
            var created = new List<RestoredContainer>();
            var lazyPages = new List<Task<Checkpoint.CriuResult>>();
            var ok = false;
            try
            {
                await ctl.Cri.CreateRestoredContainersAsync(m.PodId, podConfig, dir, podDump, byName, created, context);
                steps.Mark("create");
                Testing.FaultPoints.Crash(Testing.FaultPoints.RestoreBeforeStart);
                foreach (var c in created)
                {
                    // The pod kept the source's addresses: its connections come back established.
                    if (request.KeepConnections) ctl.RestoreConnections(c.ContainerId);
                    // Lazy: restored without its memory, which criu lazy-pages pulls from the source.
                    // Its start-up and the shim's overlap (both are on the downtime's path).
                    if (pageServers.TryGetValue(c.Name, out var pageServer))
                    {
                        lazyPages.Add(await ctl.StartLazyPagesAsync(m.Id, c.ContainerId, pageServer,
                            () => ctl.Cri.StartShimAheadAsync(c.ContainerId, context.CancellationToken)));
                        steps.Mark("lazy-pages+shim");
                    }
                    await ctl.Cri.StartContainer(new StartContainerRequest { ContainerId = c.ContainerId }, context);
                    steps.Mark("start");
                }
                ok = true;
            }
            finally
            {
                if (!ok)
                {
                    ctl.StopLazyPages(m.Id);
                    if (request.KeepConnections) ctl.LockPodNetwork(m.PodId);
                    foreach (var c in created)
                        await ctl.Cri.RemoveContainer(new RemoveContainerRequest { ContainerId = c.ContainerId }, context);
                }
            }
            Store.DiscardCheckpoint(m.Id);
            // Lazy: STARTED without PagesArrived; the target owns the pod only once that is recorded.
            Store.Update(m.Id, r => r with { Phase = MigrationPhase.Started, Lazy = lazyPages.Count > 0 });
            if (lazyPages.Count > 0) ctl.WatchPages(m.Id, lazyPages);
            steps.Mark("record");
            ctl.LogRestoreSteps(m.Id, steps);
            Testing.FaultPoints.Crash(Testing.FaultPoints.RestoreAfterStart);
            return new PeerResponse { PodSandboxId = m.PodId, Bytes = m.BytesReceived };
        }
    }

    /// <summary>A lazy restore's page server per container name: none (cold), or one for every
    /// checkpointed container, each HOST:PORT.</summary>
    private static Dictionary<string, string> PageServers(PeerRequest request, PodDump podDump)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in request.PageServers)
        {
            if (!PeerClient.IsAddress(p.Address)) throw Fail.InvalidArgument($"page_servers: '{p.Address}' is not HOST:PORT");
            if (!result.TryAdd(p.ContainerName, p.Address)) throw Fail.InvalidArgument($"page_servers: container {p.ContainerName} named twice");
        }
        if (result.Count > 0 && podDump.Containers.FirstOrDefault(c => !result.ContainsKey(c.Name)) is { } missing)
            throw Fail.InvalidArgument($"page_servers: none for container {missing.Name} of the pod checkpoint");
        return result;
    }
}
