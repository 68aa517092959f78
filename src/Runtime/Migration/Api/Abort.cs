using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Api;

public sealed partial class MigrationService
{
    /// <summary>Before Commit. On the source: a Migrate still running is stopped, the target
    /// removes what it made, and the source pod is thawed: it runs on as it was. On the target: the
    /// prepared pod and whatever was restored into it are removed. Idempotent: ABORTED answers as
    /// it is; COMMITTED is FailedPrecondition.</summary>
    public override async Task<MigrationStatus> Abort(AbortRequest request, ServerCallContext context)
    {
        var m = Get(request.MigrationId);
        if (ctl.RunningFor(m.Id) is { } running)
        {
            await running.Cancel.CancelAsync();
            try { await running.Work.WaitAsync(context.CancellationToken); }
            catch (Exception e) when ((e is CriException or OperationCanceledException or HttpRequestException) && !context.CancellationToken.IsCancellationRequested) { }
        }
        using (await Store.LockAsync(m.Id, context.CancellationToken))
        {
            m = Store.Find(m.Id)!;
            if (m.Phase == MigrationPhase.Aborted) return MigrationController.Status(m);
            if (m.Phase == MigrationPhase.Committed)
                throw Fail.FailedPrecondition($"migration {m.Id} is already committed: the pod runs on the target");
            return MigrationController.Status(m.Side == MigrationSide.Source
                ? await ctl.AbortSourceAsync(m, context.CancellationToken)
                : await ctl.RemoveTargetAsync(m, context.CancellationToken));
        }
    }
}
