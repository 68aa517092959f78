using CriRuntime.Checkpoint;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Creates a pod from a CheckpointPod directory (docs/checkpoint.md, "RestorePod"):
    /// the pod is made from the NEW config (its uid, cgroup parent, log directory), each
    /// checkpointed container is matched by name to a container_configs entry and created from
    /// its archive exactly as CreateContainer does with an archive path as image (the same hostile
    /// input checks); they are returned CREATED and StartContainer restores each. On error the pod
    /// and everything in it is removed. Off unless [checkpoint] restore = true.</summary>
    public override async Task<RestorePodResponse> RestorePod(RestorePodRequest request, ServerCallContext context)
    {
        if (request.Options.Count > 0)
            throw Fail.InvalidArgument($"options: unknown key \"{request.Options.Keys.Order(StringComparer.Ordinal).First()}\" (RestorePod takes no options)");
        if (request.CheckpointPath.Length == 0) throw Fail.InvalidArgument("checkpoint_path: required");
        if (!Path.IsPathRooted(request.CheckpointPath)) throw Fail.InvalidArgument($"checkpoint_path: '{request.CheckpointPath}' must be an absolute path");
        var config = request.Config ?? throw Fail.InvalidArgument("config: required");
        if (!InForce.Checkpoint.Restore)
            throw Fail.FailedPrecondition("restoring from checkpoints is off ([checkpoint] restore = false)");
        var dir = Path.GetFullPath(request.CheckpointPath);
        var dirInfo = new DirectoryInfo(dir);
        if (dirInfo.LinkTarget is not null) throw Fail.InvalidArgument($"checkpoint_path: {dir} is a symlink");
        if (!dirInfo.Exists) throw Fail.InvalidArgument($"checkpoint_path: directory {dir} does not exist");
        PodDump podDump;
        try { podDump = PodArchive.Read(dir); }
        catch (InvalidDataException e) { throw Fail.InvalidArgument($"checkpoint_path: {e.Message}"); }

        var byName = MatchContainerConfigs(podDump, request.ContainerConfigs);

        var podId = (await RunPodSandbox(new RunPodSandboxRequest { Config = config, RuntimeHandler = request.RuntimeHandler }, context)).PodSandboxId;
        var ok = false;
        try
        {
            var response = new RestorePodResponse { PodSandboxId = podId };
            var restored = new List<RestoredContainer>();
            await CreateRestoredContainersAsync(podId, config, dir, podDump, byName, restored, context);
            response.RestoredContainers.AddRange(restored);
            ok = true;
            return response;
        }
        finally
        {
            // Everything made goes: the pod, and with it its containers.
            if (!ok) await _podCtl.RemoveAsync(podId, CancellationToken.None);
        }
    }

    /// <summary>Every checkpointed container of <paramref name="podDump"/> matched by name to
    /// exactly one of <paramref name="configs"/>, and every config to a checkpointed container
    /// (InvalidArgument naming the entry otherwise).</summary>
    internal static Dictionary<string, ContainerConfig> MatchContainerConfigs(PodDump podDump, IReadOnlyList<ContainerConfig> configs)
    {
        // Every checkpointed container gets exactly one config, and every config one container.
        var byName = new Dictionary<string, ContainerConfig>(StringComparer.Ordinal);
        for (var i = 0; i < configs.Count; i++)
        {
            var name = configs[i].Metadata?.Name ?? "";
            if (name.Length == 0) throw Fail.InvalidArgument($"container_configs[{i}].metadata.name: required");
            if (!byName.TryAdd(name, configs[i])) throw Fail.InvalidArgument($"container_configs[{i}].metadata.name: {name} is named twice");
            if (!podDump.Containers.Any(c => c.Name == name))
                throw Fail.InvalidArgument($"container_configs[{i}].metadata.name: the checkpoint has no container {name} (it has {string.Join(", ", podDump.Containers.Select(c => c.Name))})");
        }
        if (podDump.Containers.FirstOrDefault(c => !byName.ContainsKey(c.Name)) is { } missing)
            throw Fail.InvalidArgument($"container_configs: no config for checkpointed container {missing.Name}");
        return byName;
    }

    /// <summary>Each checkpointed container created CREATED in the existing pod
    /// <paramref name="podId"/> (RestorePod's new pod, or the sandbox a migration's target
    /// prepared) from its archive in <paramref name="dir"/>, exactly as CreateContainer does with
    /// an archive path as image, each added to <paramref name="restored"/> as it is made (on error
    /// the caller removes those made so far, or the pod).</summary>
    internal async Task CreateRestoredContainersAsync(string podId, PodSandboxConfig config, string dir,
        PodDump podDump, Dictionary<string, ContainerConfig> byName, List<RestoredContainer> restored, ServerCallContext context)
    {
        foreach (var c in podDump.Containers)
        {
            var containerConfig = byName[c.Name].Clone();
            // The archive is the image: CreateContainer's restore path unpacks and checks it.
            var userImage = containerConfig.Image?.Image ?? "";
            containerConfig.Image = new ImageSpec { Image = Path.Combine(dir, c.Archive), UserSpecifiedImage = containerConfig.Image?.UserSpecifiedImage is { Length: > 0 } u ? u : userImage };
            var created = await CreateContainer(new CreateContainerRequest { PodSandboxId = podId, Config = containerConfig, SandboxConfig = config }, context);
            restored.Add(new RestoredContainer { Name = c.Name, ContainerId = created.ContainerId });
        }
    }
}
