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
        for (var i = 0; i < request.PodIps.Count; i++)
            if (!System.Net.IPAddress.TryParse(request.PodIps[i], out _))
                throw Fail.InvalidArgument($"pod_ips[{i}]: '{request.PodIps[i]}' is not an IP address");

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
            var podId = await RunWithIpsAsync(request, context.CancellationToken);
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

    /// <summary>The target's pod, with the source pod's addresses when the request names them
    /// (the CNI `ips` capability). When the network cannot give them (the plugin refuses, or does
    /// not declare the capability and gives another), the pod is made with a new address if the
    /// caller allowed it, else nothing is left and PrepareTarget is FailedPrecondition.</summary>
    private async Task<string> RunWithIpsAsync(PrepareTargetRequest request, CancellationToken ct)
    {
        var run = new RunPodSandboxRequest { Config = request.Config, RuntimeHandler = request.RuntimeHandler };
        var wanted = request.PodIps.ToList();
        if (wanted.Count == 0) return await ctl.Cri.RunPodSandboxAsync(run, [], ct);
        var md = request.Config.Metadata;
        // A pod of that name made before (RunPodSandbox answers it again) is not this call's to remove.
        var existed = md is not null && ctl.Pods.FindByName(State.PodSandboxStore.Key(md.Name, md.Namespace, md.Uid, md.Attempt)) is not null;
        string podId;
        try
        {
            podId = await ctl.Cri.RunPodSandboxAsync(run, wanted, ct);
        }
        catch (CriException e) when (e.Kind is not ErrorKind.InvalidArgument and not ErrorKind.NotFound)
        {
            if (!request.AllowNewIp)
                throw Fail.FailedPrecondition($"pod_ips: this node's pod network cannot give the pod {string.Join(", ", wanted)} ({e.Message}); set allow_new_ip to take a new address (connections closed)");
            return await ctl.Cri.RunPodSandboxAsync(run, [], ct);
        }
        var got = ctl.Pods.Get(podId).Ips;
        if (MigrationController.SameIps(wanted, got) || request.AllowNewIp) return podId;
        if (!existed) await ctl.PodCtl.RemoveAsync(podId, ct);
        throw Fail.FailedPrecondition($"pod_ips: this node's pod network gave the pod {(got.Count > 0 ? string.Join(", ", got) : "no address")}, not {string.Join(", ", wanted)} " +
            "(its plugins must declare the capability \"ips\"); set allow_new_ip to take a new address (connections closed)");
    }
}
