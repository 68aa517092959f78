using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Peer;

/// <summary>What a target serves its sources, on the [migration] listener only (mutual TLS; the
/// daemon refuses these methods on the CRI socket and everything else on the listener). Every
/// call names a migration this node prepared as its target, else FailedPrecondition: a peer
/// signed by the CA still cannot push a pod this node did not agree to take. Transfer and Restore
/// are in their own files.</summary>
public sealed partial class MigrationPeerService(MigrationController ctl) : MigrationPeer.MigrationPeerBase
{
    private MigrationStore Store => ctl.Store;

    /// <summary>The target record of <paramref name="id"/>, which must be in one of <paramref name="phases"/>.</summary>
    private MigrationRecord Prepared(string id, params string[] phases)
    {
        if (id.Length == 0) throw Fail.InvalidArgument("migration_id: required");
        var m = MigrationStore.IsValidId(id) ? Store.Find(id) : null;
        if (m is null || m.Side != MigrationSide.Target)
            throw Fail.FailedPrecondition($"migration {id} was not prepared on this node (PrepareTarget first)");
        if (!phases.Contains(m.Phase))
            throw Fail.FailedPrecondition($"migration {id} is {m.Phase} on this node (expected {string.Join(" or ", phases)})");
        return m;
    }

    public override Task<PeerResponse> Check(PeerRequest request, ServerCallContext context)
    {
        var m = Prepared(request.MigrationId, MigrationPhase.Prepared, MigrationPhase.Receiving, MigrationPhase.Received);
        // The source compares them with its pod's before any freeze (the pod keeps its IP, or not).
        return Task.FromResult(new PeerResponse { PodSandboxId = m.PodId, PodIps = { ctl.Pods.Find(m.PodId)?.Ips ?? [] } });
    }

    /// <summary>The source asks, once its page servers are done (or while they serve), whether
    /// this node's lazy restore has every memory page: answers when it does (at once for a cold
    /// restore), FailedPrecondition when it cannot (docs/migration.md, "Restarts").</summary>
    public override async Task<PeerResponse> PagesArrived(PeerRequest request, ServerCallContext context)
    {
        var m = Prepared(request.MigrationId, MigrationPhase.Started, MigrationPhase.Committed);
        await ctl.WaitPagesArrivedAsync(m, context.CancellationToken);
        return new PeerResponse { PodSandboxId = m.PodId, Bytes = m.BytesReceived };
    }

    /// <summary>The source committed: this node's copy is the pod now. Idempotent.</summary>
    public override async Task<PeerResponse> Commit(PeerRequest request, ServerCallContext context)
    {
        var m = Prepared(request.MigrationId, MigrationPhase.Started, MigrationPhase.Committed);
        using (await Store.LockAsync(m.Id, context.CancellationToken))
        {
            if (m.Phase == MigrationPhase.Started)
            {
                Store.DiscardCheckpoint(m.Id);
                Store.Update(m.Id, r => r with { Phase = MigrationPhase.Committed });
            }
        }
        return new PeerResponse { PodSandboxId = m.PodId };
    }

    /// <summary>The source aborted (or failed): the pod this node prepared goes, with whatever was
    /// restored into it. Idempotent; an id this node never prepared is NotFound.</summary>
    public override async Task<PeerResponse> Abort(PeerRequest request, ServerCallContext context)
    {
        var id = request.MigrationId;
        if (id.Length == 0) throw Fail.InvalidArgument("migration_id: required");
        var m = MigrationStore.IsValidId(id) ? Store.Find(id) : null;
        if (m is null || m.Side != MigrationSide.Target) throw Fail.NotFound($"migration {id} not found on this node");
        using (await Store.LockAsync(m.Id, context.CancellationToken))
        {
            m = Store.Find(m.Id)!;
            if (m.Phase == MigrationPhase.Committed) throw Fail.FailedPrecondition($"migration {id} is committed on this node");
            if (m.Phase != MigrationPhase.Aborted) m = await ctl.RemoveTargetAsync(m, context.CancellationToken);
        }
        return new PeerResponse { PodSandboxId = m.PodId };
    }
}
