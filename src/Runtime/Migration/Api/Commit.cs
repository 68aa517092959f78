using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Api;

public sealed partial class MigrationService
{
    /// <summary>On the source, once Migrate is DONE (the target runs the pod): the frozen source
    /// pod is removed. Idempotent: COMMITTED answers as it is.</summary>
    public override async Task<MigrationStatus> Commit(CommitRequest request, ServerCallContext context)
    {
        var m = Get(request.MigrationId);
        using (await Store.LockAsync(m.Id, context.CancellationToken))
        {
            m = Store.Find(m.Id)!;
            if (m.Side != MigrationSide.Source)
                throw Fail.FailedPrecondition($"migration {m.Id}: this node is its target; Commit is called on the source");
            if (m.Phase == MigrationPhase.Committed && m.FrozenCgroups.Count == 0) return MigrationController.Status(m);
            if (m.Phase is not (MigrationPhase.Done or MigrationPhase.Committed))
                throw Fail.FailedPrecondition($"migration {m.Id} is {m.Phase}: only a migration whose target runs the pod (DONE) can be committed");
            return MigrationController.Status(await ctl.CommitSourceAsync(m, context.CancellationToken));
        }
    }
}
