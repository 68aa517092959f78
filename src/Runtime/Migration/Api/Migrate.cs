using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Api;

public sealed partial class MigrationService
{
    /// <summary>The modes of Migrate; "" is cold.</summary>
    private static readonly string[] Modes = ["cold", "lazy"];

    /// <summary>On the source: starts the cold migration (freeze, dump, transfer, restore on the
    /// target) and streams its progress until DONE or FAILED. The work goes on in the daemon when
    /// the caller goes away; Migrate repeated with the same id follows it, or answers its outcome.
    /// A server stream rather than a status call to poll: the caller sees each phase and the bytes
    /// as they happen, without a polling interval, and GetMigration remains for a later look.</summary>
    public override async Task Migrate(MigrateRequest request, IServerStreamWriter<MigrationStatus> responseStream, ServerCallContext context)
    {
        var id = RequireId(request.MigrationId);
        if (request.PodSandboxId.Length == 0) throw Fail.InvalidArgument("pod_sandbox_id: required");
        if (request.TargetAddress.Length == 0) throw Fail.InvalidArgument("target_address: required");
        if (!PeerClient.IsAddress(request.TargetAddress)) throw Fail.InvalidArgument($"target_address: '{request.TargetAddress}' is not HOST:PORT");
        var mode = request.Mode.Length == 0 ? "cold" : request.Mode;
        if (!Modes.Contains(mode)) throw Fail.InvalidArgument($"mode: '{request.Mode}' is not one of {string.Join(", ", Modes)}");
        PeerTls.Required(ctl.Tls);

        MigrationController.Running? running;
        MigrationRecord m;
        using (await Store.LockAsync(id, context.CancellationToken))
        {
            if (Store.Find(id) is { } existing)
            {
                // Before the pod lookup: after Commit the pod is gone, and the repeat still answers.
                if (existing.Side != MigrationSide.Source || !existing.PodId.StartsWith(request.PodSandboxId, StringComparison.Ordinal)
                    || existing.TargetAddress != request.TargetAddress)
                    throw Fail.AlreadyExists($"migration_id: migration {id} exists on this node for another pod or target ({existing.Side}, {existing.Phase})");
                m = existing;
                running = ctl.RunningFor(id);
                // Left TRANSFERRED (the target's answer to Restore lost) or PAGING (lazy: did every page
                // arrive?) by a restart, and the target could not be asked then: ask it again.
                if (running is null && m.Phase is MigrationPhase.Transferred or MigrationPhase.Paging) running = ctl.StartResolve(m);
            }
            else
            {
                var pod = ctl.Pods.Get(request.PodSandboxId);
                if (Store.All.FirstOrDefault(o => o.Side == MigrationSide.Source && o.PodId == pod.Id && o.Phase is not (MigrationPhase.Failed or MigrationPhase.Aborted)) is { } other)
                    throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is already being migrated (migration {other.Id}, {other.Phase})");
                // Before anything is recorded or frozen: a host that cannot run CRIU's lazy dump says so now.
                if (mode == "lazy") LazyPages.Require();
                m = new MigrationRecord
                {
                    Id = id, Side = MigrationSide.Source, Phase = MigrationPhase.Freezing, PodId = pod.Id, CreatedAt = ctl.Now,
                    TargetAddress = request.TargetAddress, Mode = mode, AllowNewIp = request.AllowNewIp,
                };
                Store.Save(m);
                running = ctl.StartSource(m);
            }
        }
        if (running is null)
        {
            // Finished before: answer as it ended.
            await responseStream.WriteAsync(MigrationController.Status(m), context.CancellationToken);
            if (m.Phase == MigrationPhase.Failed) throw new CriException(m.FailedKind, m.Error);
            return;
        }
        MigrationStatus? written = null;
        while (true)
        {
            var changed = running.Changed;
            if (running.Latest is { } latest && !ReferenceEquals(latest, written))
            {
                await responseStream.WriteAsync(latest, context.CancellationToken);
                written = latest;
            }
            if (running.Work.IsCompleted && ReferenceEquals(running.Latest, written)) break;
            await Task.WhenAny(changed, running.Work).WaitAsync(context.CancellationToken);
        }
        // The work's own error, typed (FailedPrecondition of an unprepared target, ...).
        await running.Work;
    }
}
