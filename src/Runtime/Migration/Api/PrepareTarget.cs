using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Google.Protobuf;
using Grpc.Core;

namespace CriRuntime.Migration.Api;

public sealed partial class MigrationService
{
    /// <summary>On the target, before any downtime: the pod's sandbox is made now (RunPodSandbox:
    /// record, namespaces, cgroups, CNI ADD) and the migration recorded PREPARED with the container
    /// configs its restore will use. Repeated with the same id and pod, it answers the same pod.</summary>
    public override async Task<PrepareTargetResponse> PrepareTarget(PrepareTargetRequest request, ServerCallContext context)
    {
        var id = RequireId(request.MigrationId);
        var config = request.Config ?? throw Fail.InvalidArgument("config: required");
        if (request.ContainerConfigs.Count == 0) throw Fail.InvalidArgument("container_configs: required (one per container to restore)");
        for (var i = 0; i < request.ContainerConfigs.Count; i++)
            if (request.ContainerConfigs[i].Metadata?.Name is not { Length: > 0 })
                throw Fail.InvalidArgument($"container_configs[{i}].metadata.name: required");
        if (!ctl.Cri.RestoreEnabled)
            throw Fail.FailedPrecondition("this node cannot be a migration target: restoring from checkpoints is off ([checkpoint] restore = false)");
        if (ctl.Tls is null)
            throw Fail.FailedPrecondition("this node cannot be a migration target: [migration] listen, cert_file, key_file and ca_file are not set");

        using (await Store.LockAsync(id, context.CancellationToken))
        {
            var podConfig = config.ToByteArray();
            if (Store.Find(id) is { } existing)
            {
                // The same pod (by its metadata, as RunPodSandbox recognises a retry), not the same bytes.
                if (existing.Side != MigrationSide.Target || !Equals(PodSandboxConfig.Parser.ParseFrom(existing.PodConfig).Metadata, config.Metadata))
                    throw Fail.AlreadyExists($"migration_id: migration {id} exists on this node for another pod ({existing.Side}, {existing.Phase})");
                if (existing.Phase == MigrationPhase.Aborted)
                    throw Fail.FailedPrecondition($"migration {id} was aborted on this node; prepare a new migration id");
                return new PrepareTargetResponse { PodSandboxId = existing.PodId };
            }
            // RunPodSandbox is itself idempotent by the pod's name: a retry after a crash between it
            // and the record below gets the same pod.
            var podId = (await ctl.Cri.RunPodSandbox(new RunPodSandboxRequest { Config = config, RuntimeHandler = request.RuntimeHandler }, context)).PodSandboxId;
            Store.Save(new MigrationRecord
            {
                Id = id, Side = MigrationSide.Target, Phase = MigrationPhase.Prepared, PodId = podId, CreatedAt = ctl.Now,
                RuntimeHandler = request.RuntimeHandler, PodConfig = podConfig,
                ContainerConfigs = [.. request.ContainerConfigs.Select(c => c.ToByteArray())],
            });
            Testing.FaultPoints.Crash(Testing.FaultPoints.PrepareTargetAfterRecord);
            return new PrepareTargetResponse { PodSandboxId = podId };
        }
    }
}
