using System.Text.Json;
using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override async Task<StatusResponse> Status(StatusRequest request, ServerCallContext context)
    {
        var network = await _network.StatusAsync(context.CancellationToken);
        var response = new StatusResponse
        {
            Status = new RuntimeStatus
            {
                Conditions =
                {
                    new RuntimeCondition { Type = "RuntimeReady", Status = true },
                    network.Ready
                        ? new RuntimeCondition { Type = "NetworkReady", Status = true }
                        : new RuntimeCondition { Type = "NetworkReady", Status = false, Reason = "NetworkPluginNotReady", Message = network.Message },
                },
            },
        };
        // rro through mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE) in the shim; user namespaces
        // (userns_options POD) with idmapped rootfs through criruntime-nsexec, when it is installed.
        var userns = File.Exists(Pods.PodUserNamespace.BinaryPath);
        foreach (var name in HandlerNames())
            response.RuntimeHandlers.Add(new RuntimeHandler { Name = name, Features = new RuntimeHandlerFeatures { RecursiveReadOnlyMounts = true, UserNamespaces = userns } });
        // supplemental_groups_policy Merge and Strict (UserResolver), the effective ids in
        // ContainerStatus.user: the kubelet passes the pod's policy only when this is set.
        response.Features = new RuntimeFeatures { SupplementalGroupsPolicy = true };
        if (request.Verbose)
        {
            response.Info["config"] = JsonSerializer.Serialize(InForce, StatusJson.Default.CriRuntimeConfig);
            response.Info["network"] = JsonSerializer.Serialize(network, StatusJson.Default.CniStatus);
            response.Info["podCIDR"] = _runtimeConfig.PodCidr;
            response.Info["version"] = BuildVersion;
            // Checkpoint/restore: where criu is, its version, `criu check` (docs/checkpoint.md).
            response.Info["criu"] = JsonSerializer.Serialize(await CriuTool.InfoAsync(), StatusJson.Default.CriuInfo);
            // The partition /proc view: lxcfs's binary, mount, health (docs/partition-view.md).
            if (_lxcfs is not null) response.Info["lxcfs"] = JsonSerializer.Serialize(_lxcfs.Info(), PartitionView.LxcfsJson.Default.LxcfsInfo);
            // Disk quotas: the backend and the sizes in use (docs/storage.md).
            response.Info["storage"] = JsonSerializer.Serialize(StorageInfo(), StatusJson.Default.StorageInfo);
        }
        return response;
    }

    private Storage.StorageInfo StorageInfo() => new(
        _volumes.Backend,
        _config.Storage.RootfsQuota,
        [.. _containers.All.Where(c => c.Volume is not null).Select(c => new Storage.VolumeInfo(c.Id, c.Volume!.SizeBytes, c.Volume.MountPoint))],
        [.. _volumes.Warm().OrderBy(kv => kv.Key).Select(kv => new Storage.WarmVolumes(kv.Key, kv.Value))]);

    /// <summary>"" (the default, as the kubelet names it), its alias, then the configured ones.</summary>
    private IEnumerable<string> HandlerNames() => ["", Config.RuntimeSection.DefaultHandler, .. _config.Runtime.Handlers.Keys];
}
