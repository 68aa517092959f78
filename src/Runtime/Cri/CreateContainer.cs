using System.Security.Cryptography;
using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Oci;
using CriRuntime.Files;
using CriRuntime.State;
using Google.Protobuf;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Mounts the image as an overlay root, writes the OCI bundle and has a shim create the
    /// container (set up, waiting for StartContainer). A retry with the same (pod, name, attempt)
    /// gets the same container.</summary>
    public override async Task<CreateContainerResponse> CreateContainer(CreateContainerRequest request, ServerCallContext context)
    {
        var config = request.Config ?? throw Fail.InvalidArgument("config: required");
        if (string.IsNullOrEmpty(config.Metadata?.Name)) throw Fail.InvalidArgument("config.metadata.name: required");
        if (string.IsNullOrEmpty(config.Image?.Image)) throw Fail.InvalidArgument("config.image.image: required");
        // Before anything is made: what the shim would refuse later, refused here naming the CRI field.
        ResourceLimits.From(config.Linux?.Resources, "config.linux.resources");
        var pod = _pods.Get(request.PodSandboxId);
        if (pod.State != PodState.Ready) throw Fail.FailedPrecondition($"pod sandbox {pod.Id} is not ready");

        var key = ContainerStore.Key(pod.Id, config.Metadata.Name, config.Metadata.Attempt);
        if (_containers.FindByName(key) is { } existing) return new CreateContainerResponse { ContainerId = existing.Id };
        var id = await _containers.Creating.RunAsync(key, () => CreateContainerAsync(request, pod), context.CancellationToken);
        return new CreateContainerResponse { ContainerId = id };
    }

    private async Task<string> CreateContainerAsync(CreateContainerRequest request, PodSandboxRecord pod)
    {
        var config = request.Config;
        var podConfig = PodSandboxConfig.Parser.ParseFrom(pod.Config);
        var image = _images.Resolve(config.Image.Image);
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var dir = _containers.ContainerDir(id);
        var bundle = Path.Combine(dir, "bundle");
        var rootfs = Path.Combine(bundle, "rootfs");
        // The shim's control socket lives here and sun_path holds only 107 bytes: keep it short.
        // 20 hex digits (80 bits) of a random id do not collide in practice.
        var stateDir = Path.Combine(_config.State, "c", id[..20]);
        var logPath = LogPath(podConfig, config, dir);
        var cgroupsPath = $"{PodCgroup(pod, podConfig)}/{id}";

        await using var undo = new Rollback(_log, $"CreateContainer {config.Metadata.Name} in {pod.Id}");
        Directory.CreateDirectory(bundle);
        undo.Add("remove container dir", () => Directory.Delete(dir, recursive: true));
        if (pod.UserNs is not null && Pods.PodUserNamespace.Validate(podConfig.Linux?.SecurityContext?.NamespaceOptions?.UsernsOptions) is { } maps)
            IdmappedRootfs.Mount(image.LayerDirs, Path.Combine(dir, "upper"), Path.Combine(dir, "work"), rootfs, pod.UserNs, Path.Combine(dir, "idmap"),
                maps.Uid.HostId, maps.Gid.HostId);
        else
            RootfsMount.Mount(image.LayerDirs, Path.Combine(dir, "upper"), Path.Combine(dir, "work"), rootfs);
        undo.Add("unmount rootfs", () => RootfsMount.Unmount(rootfs));

        var sc = config.Linux?.SecurityContext;
        var target = sc?.NamespaceOptions is { Pid: NamespaceMode.Target } ns ? await TargetInitAsync(ns, pod) : ((string Id, int Pid)?)null;
        var user = UserResolver.Resolve(rootfs, sc?.RunAsUser?.Value, sc?.RunAsUsername, sc?.RunAsGroup?.Value,
            [.. sc?.SupplementalGroups ?? [], .. podConfig.Linux?.SecurityContext?.SupplementalGroups ?? []], image.Config.Config?.User,
            sc?.SupplementalGroupsPolicy ?? SupplementalGroupsPolicy.Merge);
        var spec = SpecBuilder.Build(new SpecInput
        {
            ContainerId = id,
            Config = config,
            PodConfig = podConfig,
            Image = image.Config.Config,
            User = user,
            NetNs = pod.NetNs,
            IpcNs = pod.IpcNs,
            UtsNs = pod.UtsNs,
            UserNs = pod.UserNs,
            PidNs = pod.PidNs,
            TargetPidNs = target is { } t ? $"/proc/{t.Pid}/ns/pid" : null,
            PodDir = pod.Dir,
            CgroupsPath = cgroupsPath,
            HostDevices = sc?.Privileged == true
                ? HostDevices.Scan("/dev", d => Directory.EnumerateFileSystemEntries(d).Select(e => Path.GetFileName(e)), p => Interop.Libc.DeviceInfo(p, followSymlinks: false))
                : null,
            PidsLimit = _config.Runtime.PidsLimit,
            RuntimeCapabilities = RuntimeCapabilities.Bounding,
        });
        // Read by the shim now and by ContainerRecovery after a daemon crash, never after a reboot
        // (the container is gone then): atomic, not durable.
        AtomicFile.Write(Path.Combine(bundle, SpecFile.ConfigName), SpecFile.Serialize(spec), durable: false);
        Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);

        undo.Add("remove shim state", () => { if (Directory.Exists(stateDir)) Directory.Delete(stateDir, recursive: true); });
        undo.Add("kill container", () => _shims.KillAsync(stateDir, 9, CancellationToken.None));
        await _shims.CreateAsync(id, bundle, stateDir, logPath, pod.RuntimeHandler, CancellationToken.None);
        Testing.FaultPoints.Crash(Testing.FaultPoints.CreateContainerAfterShim);
        // The shim has joined /proc/PID/ns/pid by now. Had the target's init exited and its pid
        // been reused in between, the container would be in a stranger's namespace: the target
        // still running with the same init since before the join rules that out.
        if (target is { } before && await TargetInitAsync(sc!.NamespaceOptions, pod) is var after && after.Pid != before.Pid)
            throw Fail.FailedPrecondition($"config.linux.security_context.namespace_options.target_id: container {before.Id} restarted while the container was created");

        var record = new ContainerRecord
        {
            Id = id,
            PodId = pod.Id,
            Name = config.Metadata.Name,
            Attempt = config.Metadata.Attempt,
            CreatedAtNanos = NowNanos(),
            Config = config.ToByteArray(),
            ImageId = image.Id,
            ImageRef = config.Image.Image,
            LogPath = logPath,
            BundleDir = bundle,
            StateDir = stateDir,
            CgroupsPath = cgroupsPath,
            User = new ContainerUserRecord(user.Uid, user.Gid, user.AdditionalGids),
        };
        _imageUsage.MarkInUse(image.Id, id);
        _containers.Save(record);
        undo.Commit();
        _events.Publish(new ContainerEventResponse { ContainerId = id, ContainerEventType = ContainerEventType.ContainerCreatedEvent, CreatedAt = record.CreatedAtNanos });
        // Watched from now on: a shim that dies before StartContainer leaves an exited container.
        _exits.Watch(record);
        return id;
    }

    /// <summary>pid TARGET: the running container of the same pod whose pid namespace to join,
    /// and its init's host pid.</summary>
    private async Task<(string Id, int Pid)> TargetInitAsync(NamespaceOption ns, PodSandboxRecord pod)
    {
        const string field = "config.linux.security_context.namespace_options.target_id";
        if (ns.TargetId.Length == 0) throw Fail.InvalidArgument($"{field}: required with pid TARGET");
        var target = _containers.TryGet(ns.TargetId) ?? throw Fail.NotFound($"{field}: container {ns.TargetId} not found");
        if (target.PodId != pod.Id)
            throw Fail.InvalidArgument($"{field}: container {target.Id} is in pod {target.PodId}, not in {pod.Id}");
        var state = await _shims.StateAsync(target.Id, target.StateDir, CancellationToken.None);
        if (state.Status != Shim.Client.ShimStatus.Running || state.Pid <= 0)
            throw Fail.FailedPrecondition($"{field}: container {target.Id} is not running");
        return (target.Id, state.Pid);
    }

    /// <summary>The kubelet's log path (relative to the pod's log directory, e.g.
    /// "NAME/0.log"), else one of our own. The result must stay inside the log directory,
    /// compared by path components (a text prefix would let "../logs-other/x" through).</summary>
    internal static string LogPath(PodSandboxConfig pod, ContainerConfig c, string containerDir)
    {
        // Without both (crictl may send neither) the log goes next to the container's state.
        if (pod.LogDirectory.Length == 0 || c.LogPath.Length == 0) return Path.Combine(containerDir, "container.log");
        if (Path.IsPathRooted(c.LogPath))
            throw Fail.InvalidArgument($"config.log_path: '{c.LogPath}' must be relative to the pod's log_directory");
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(pod.LogDirectory));
        var path = Path.GetFullPath(Path.Combine(root, c.LogPath));
        var relative = Path.GetRelativePath(root, path);
        if (relative == "." || relative == ".." || relative.StartsWith("../", StringComparison.Ordinal) || Path.IsPathRooted(relative))
            throw Fail.InvalidArgument($"config.log_path: '{c.LogPath}' leaves the pod's log_directory {root}");
        return path;
    }

    /// <summary>The pod's cgroup: the kubelet's cgroup_parent, else one under our cgroup root.</summary>
    private string PodCgroup(string podId, PodSandboxConfig config) =>
        config.Linux?.CgroupParent is { Length: > 0 } parent ? parent.TrimEnd('/') : $"/{_config.Runtime.CgroupRoot.Trim('/')}/{podId}";

    /// <summary>The pod's cgroup as RunPodSandbox decided and recorded it, so a changed
    /// cgroup_root cannot make later calls miss it; recomputed for records written before it was
    /// stored.</summary>
    private string PodCgroup(PodSandboxRecord pod, PodSandboxConfig config) => pod.CgroupPath ?? PodCgroup(pod.Id, config);

    /// <summary>The pod init's cgroup (pods with a shared pid namespace): a leaf below the pod's,
    /// named so that it cannot be taken for a container's (64 hex digits).</summary>
    private string PodInitCgroup(PodSandboxRecord pod, PodSandboxConfig config) => $"{PodCgroup(pod, config)}/{Pods.PodInit.CgroupLeaf}";
}
