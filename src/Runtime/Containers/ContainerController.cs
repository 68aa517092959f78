using CriRuntime.Files;
using System.Security.Cryptography;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Images;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.State;
using Google.Protobuf;

namespace CriRuntime.Containers;

/// <summary>Creates, starts, stops and removes containers: the steps under CreateContainer,
/// StartContainer, StopContainer and RemoveContainer (rootfs, OCI bundle, shim, record, events),
/// each undone when a later one fails. The RPC files validate and call; this works through
/// interfaces (<see cref="IShimRunner"/>, <see cref="IContainerRootfs"/>, <see cref="IContainerExits"/>,
/// <see cref="IImageResolver"/>) that unit tests fake.</summary>
public sealed partial class ContainerController(
    CriRuntimeConfig config,
    ContainerStore containers,
    IImageResolver images,
    IImageUsage imageUsage,
    IShimRunner shims,
    IContainerRootfs rootfs,
    Storage.IWritableVolumes volumes,
    ContainerEvents events,
    IContainerExits exits,
    TimeProvider clock,
    ILogger<ContainerController> log,
    PartitionView.IProcViewSource? procView = null,
    ConfigSource? configSource = null)
{
    /// <summary>The blockio classes in force (they change with a reload).</summary>
    private Storage.BlockioClasses Blockio => (configSource?.Current ?? config).Storage.Blockio;

    private long NowNanos() => ExitMonitor.Nanos(clock.GetUtcNow());

    /// <summary>Where RemoveContainer puts container directories and shim state dirs to be deleted
    /// in the background.</summary>
    private readonly (Trash Containers, Trash ShimStates) _trash = Trash.ForContainers(containers, config.State, log);

    public IEnumerable<ContainerRecord> InPod(string podId) => containers.InPod(podId);

    /// <summary>The container of this (pod, name, attempt), made unless it exists: a retry (also
    /// one while the first call still runs) gets the same container.</summary>
    public async Task<string> CreateAsync(CreateContainerRequest request, PodSandboxRecord pod, CancellationToken ct)
    {
        var key = ContainerStore.Key(pod.Id, request.Config.Metadata.Name, request.Config.Metadata.Attempt);
        if (containers.FindByName(key) is { } existing) return existing.Id;
        return await containers.Creating.RunAsync(key, () => CreateNewAsync(request, pod), ct);
    }

    private async Task<string> CreateNewAsync(CreateContainerRequest request, PodSandboxRecord pod)
    {
        var steps = new StepTimes();
        var containerConfig = request.Config;
        var podConfig = PodSandboxConfig.Parser.ParseFrom(pod.Config);
        var origin = CheckpointRestore.Origin(containerConfig.Image.Image, config.Checkpoint, images);
        if (origin is not null) CheckpointRestore.CheckRequest(containerConfig, pod);
        // Before anything is made: a pod that asks for the /proc view and cannot have it.
        var procViewMount = PartitionView.ProcView.Wanted(pod.Annotations, pod.RuntimeHandler, config, "sandbox annotations")
            ? (procView ?? throw Fail.FailedPrecondition("the partition /proc view is not available in this daemon")).RequireMount()
            : null;
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var dir = containers.ContainerDir(id);
        var bundle = Path.Combine(dir, "bundle");
        var rootDir = Path.Combine(bundle, "rootfs");
        // The shim's control socket lives here and sun_path holds only 107 bytes: keep it short.
        // 20 hex digits (80 bits) of a random id do not collide in practice.
        var stateDir = Path.Combine(config.State, "c", id[..20]);
        var logPath = LogPath(podConfig, containerConfig, dir);
        // Below the pod's cgroup as recorded when the pod was made.
        var cgroupsPath = $"{pod.CgroupPath}/{id}";

        var quota = Storage.DiskQuota.ForContainer(config.Storage.RootfsQuota, containerConfig.Metadata.Name, containerConfig.Annotations, podConfig.Annotations);
        var nofile = Pods.PartitionLimits.Nofile(containerConfig.Metadata.Name, containerConfig.Annotations, podConfig.Annotations, Pods.PartitionLimits.RuntimeNofileHard);
        var shmBytes = Pods.PartitionLimits.ShmBytes(podConfig.Annotations);

        steps.Mark("checks");
        await using var undo = new Rollback(log, $"CreateContainer {containerConfig.Metadata.Name} in {pod.Id}");
        Directory.CreateDirectory(bundle);
        undo.Add("remove container dir", () => Directory.Delete(dir, recursive: true));
        steps.Mark("mkdir");
        Storage.WritableVolume? volume = null;
        string? layerDir = null;
        if (quota > 0)
        {
            // In a pod with a volume the image file is inside it (its blocks count to the pod's
            // quota); the container's volume is then no larger than the pod's.
            var volumeImage = pod.Volume is { } pv ? Path.Combine(pv.MountPoint, "containers", id + ".img") : Path.Combine(dir, Storage.FileVolumes.ImageName);
            volume = volumes.Create(volumeImage, Path.Combine(dir, Storage.FileVolumes.MountName), pod.Volume is { } p ? Math.Min(quota, p.SizeBytes) : quota, pod.Volume);
            undo.Add("release writable volume", () => volumes.Release(volume));
        }
        else if (pod.Volume is { } pv)
        {
            layerDir = Path.Combine(pv.MountPoint, "layers", id);
            volumes.MakeLayerDir(layerDir, pv);
            undo.Add("remove layer dir", () => volumes.RemoveLayerDir(layerDir));
        }
        steps.Mark("volume");
        var upper = volume?.Upper ?? Path.Combine(layerDir ?? dir, "upper");
        var work = volume?.Work ?? Path.Combine(layerDir ?? dir, "work");
        // From a checkpoint: the archive (or checkpoint image) is unpacked and checked first; its
        // image is only looked up among the stored ones, and its writable layer goes into the
        // upper dir before the mount.
        Checkpoint.CheckpointSource? checkpoint = null;
        if (origin is not null)
            using (Telemetry.Tracing.Start("restore unpack archive")?.SetTag("criruntime.checkpoint_archive", origin.Name))
                checkpoint = CheckpointRestore.Unpack(origin, images, Path.Combine(dir, CheckpointRestore.DirName));
        var image = checkpoint is null ? images.Resolve(containerConfig.Image.Image) : CheckpointRestore.ResolveImage(images, checkpoint);
        steps.Mark("image");
        if (checkpoint is not null)
            using (Telemetry.Tracing.Start("restore rootfs diff"))
                CheckpointRestore.ApplyRootfsDiff(checkpoint, upper);
        if (pod.UserNs is not null && Pods.PodUserNamespace.Validate(podConfig.Linux?.SecurityContext?.NamespaceOptions?.UsernsOptions) is { } maps)
            rootfs.MountIdmapped(image.LayerDirs, upper, work, rootDir, pod.UserNs, Path.Combine(dir, "idmap"), maps.Uid.HostId, maps.Gid.HostId);
        else
            rootfs.Mount(image.LayerDirs, upper, work, rootDir);
        undo.Add("unmount rootfs", () => rootfs.Unmount(rootDir));
        steps.Mark("mount");

        var sc = containerConfig.Linux?.SecurityContext;
        var target = sc?.NamespaceOptions is { Pid: NamespaceMode.Target } ns ? await TargetInitAsync(ns, podId: pod.Id) : ((string Id, int Pid)?)null;
        var user = UserResolver.Resolve(rootDir, sc?.RunAsUser?.Value, sc?.RunAsUsername, sc?.RunAsGroup?.Value,
            [.. sc?.SupplementalGroups ?? [], .. podConfig.Linux?.SecurityContext?.SupplementalGroups ?? []], image.Config.Config?.User,
            sc?.SupplementalGroupsPolicy ?? SupplementalGroupsPolicy.Merge);
        steps.Mark("user");
        var spec = SpecBuilder.Build(new SpecInput
        {
            ContainerId = id,
            Config = containerConfig,
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
            PidsLimit = config.Runtime.PidsLimit,
            Nofile = nofile,
            ShmBytes = shmBytes,
            Shm = pod.Shm,
            ProcView = procViewMount,
            RuntimeCapabilities = RuntimeCapabilities.Bounding,
        });
        // The blockio class, then io.max/io.weight of the unified map, then the pod's io-limit
        // annotation, as blockIO weights and throttles; rootfs is the volume's loop device, else
        // the disk under the container's directory (docs/storage.md).
        steps.Mark("spec");
        var blockio = Blockio.For(containerConfig.Metadata.Name, containerConfig.Annotations, podConfig.Annotations);
        spec = spec with
        {
            Linux = spec.Linux! with
            {
                Resources = Storage.IoLimits.Apply(spec.Linux.Resources, "config.linux.resources.unified", containerConfig.Metadata.Name,
                    podConfig.Annotations, d => IoDevice(d, volume, dir), blockio, Storage.BlockDevices.Expand, Storage.BlockDevices.Host.Scheduler),
            },
        };
        // Read by the shim now and by ContainerRecovery after a daemon crash, never after a reboot
        // (the container is gone then): atomic, not durable.
        steps.Mark("io-limits");
        AtomicFile.Write(Path.Combine(bundle, SpecFile.ConfigName), SpecFile.Serialize(spec), durable: false);
        steps.Mark("config.json");
        if (checkpoint is not null)
        {
            CheckpointRestore.MakeMountPoints(rootDir, spec);
            CheckpointRestore.WriteRestoreSpec(new Checkpoint.Criu(config.Checkpoint), config.Checkpoint, checkpoint, bundle, rootDir, spec,
                pod.Shm == Pods.PodShm.PathOf(pod.Dir) ? pod.Shm : null); // never the host's /dev/shm
        }
        Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
        steps.Mark("log dir");
        // No shim yet: StartContainer starts it (as containerd creates its task there), so a
        // created container is its record, bundle and mounted rootfs, nothing running.
        Testing.FaultPoints.Crash(Testing.FaultPoints.CreateContainerBeforeRecord);

        var record = new ContainerRecord
        {
            Version = ContainerRecord.CurrentVersion,
            Id = id,
            PodId = pod.Id,
            Name = containerConfig.Metadata.Name,
            Attempt = containerConfig.Metadata.Attempt,
            CreatedAtNanos = NowNanos(),
            Config = containerConfig.ToByteArray(),
            ImageId = image.Id,
            ImageRef = containerConfig.Image.Image,
            LogPath = logPath,
            BundleDir = bundle,
            StateDir = stateDir,
            CgroupsPath = cgroupsPath,
            User = new ContainerUserRecord(user.Uid, user.Gid, user.AdditionalGids),
            Labels = new Dictionary<string, string>(containerConfig.Labels),
            Annotations = new Dictionary<string, string>(containerConfig.Annotations),
            StopSignal = ContainerStore.StopSignalOf(containerConfig),
            Stdin = containerConfig.Stdin,
            StdinOnce = containerConfig.StdinOnce,
            Tty = containerConfig.Tty,
            Mounts = [.. containerConfig.Mounts.Select(MountRecord.From)],
            Resources = ResourcesRecord.From(containerConfig.Linux?.Resources),
            UserSpecifiedImage = containerConfig.Image?.UserSpecifiedImage ?? "",
            Volume = volume,
            LayerDir = layerDir,
        };
        imageUsage.MarkInUse(image.Id, id);
        containers.Add(record);
        steps.Mark("record");
        undo.Commit();
        events.Publish(new ContainerEventResponse { ContainerId = id, ContainerEventType = ContainerEventType.ContainerCreatedEvent, CreatedAt = record.CreatedAtNanos });
        LogCreateSteps(id, steps);
        return id;
    }

    /// <summary>A device of an I/O limit as a whole disk's major:minor: <c>rootfs</c> is the
    /// container's loop device when it has a disk-quota volume, else the disk holding
    /// <paramref name="containerDir"/> (null on overlay or tmpfs); a partition is its disk.</summary>
    internal static (long Major, long Minor)? IoDevice(string device, Storage.WritableVolume? volume, string containerDir)
    {
        var disks = Storage.BlockDevices.Host;
        if (Storage.BlockDevices.ParseMajorMinor(device) is { } mm) return disks.WholeDisk(mm.Major, mm.Minor);
        if (device == "rootfs") return string.IsNullOrEmpty(volume?.Device) ? disks.Under(containerDir) : disks.OfPath(volume.Device);
        return disks.OfPath(device);
    }

    /// <summary>pid TARGET: the running container of the same pod whose pid namespace to join,
    /// and its init's host pid.</summary>
    private async Task<(string Id, int Pid)> TargetInitAsync(NamespaceOption ns, string podId)
    {
        const string field = "config.linux.security_context.namespace_options.target_id";
        if (ns.TargetId.Length == 0) throw Fail.InvalidArgument($"{field}: required with pid TARGET");
        var target = containers.TryGet(ns.TargetId) ?? throw Fail.NotFound($"{field}: container {ns.TargetId} not found");
        if (target.PodId != podId)
            throw Fail.InvalidArgument($"{field}: container {target.Id} is in pod {target.PodId}, not in {podId}");
        var state = await shims.StateAsync(target.Id, target.StateDir, CancellationToken.None);
        if (state.Status != ShimStatus.Running || state.Pid <= 0)
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

    /// <summary>Whether the container's shim was started (by StartContainer; its state dir is
    /// made by `criruntime-shim create`). A created container without one has nothing running.</summary>
    public static bool HasShim(ContainerRecord c) => Directory.Exists(c.StateDir);

    /// <summary>Starts a created container: its shim sets it up (namespaces, cgroup, rootfs) and
    /// then lets it exec. FailedPrecondition when it is not created (also when its shim died
    /// before the start: it is exited then, recorded as such). A failure of the shim's set-up
    /// leaves the container exited with reason StartError and exit code 128 and nothing of the
    /// shim behind, as containerd does when its task cannot be created.</summary>
    /// <param name="runtimeHandler">The pod's runtime handler: which shim binary runs it.</param>
    public async Task StartAsync(string id, string runtimeHandler, CancellationToken ct)
    {
        ContainerRecord c;
        ShimState? died = null;
        var steps = new StepTimes();
        using (await containers.LockAsync(id, ct))
        {
            c = containers.Find(id) ?? throw Fail.NotFound($"container {id} not found");
            if (c.State != ContainerPhase.Created)
                throw Fail.FailedPrecondition($"container {c.Id} is {c.State.ToString().ToLowerInvariant()}, not created{(c.Message.Length > 0 ? ": " + c.Message : "")}");
            // A retry after a daemon crash between the two finds the shim there, waiting for start.
            if (!HasShim(c)) await CreateShimAsync(c, runtimeHandler, steps.Add);
            steps.Mark("shim create");
            try
            {
                ShimState state;
                // A container restored from a checkpoint: CRIU binds a fresh tmpfs for each one the
                // daemon captured; once it has, the host needs them no more.
                using (Checkpoint.TmpfsContent.Mount(Kernel.HostKernel.Instance, c.BundleDir))
                    state = await shims.StartAsync(c.StateDir, CancellationToken.None, steps.Add);
                // Created → running describes a live process: after a reboot the container has
                // exited whichever phase the record kept, so this update needs no fsync (kill -9 of
                // the daemon cannot lose it: the rename is atomic and the page cache outlives us).
                c = containers.Transition(c.Id, ContainerPhase.Running,
                    r => r with { StartedAtNanos = state.StartedAt is { } s ? ExitMonitor.Nanos(s) : NowNanos() }, durable: false);
                // Under the lock: the exit monitor, watching since the shim was created, records a
                // quick exit only after this, so STARTED always precedes STOPPED.
                events.Publish(new ContainerEventResponse { ContainerId = c.Id, ContainerEventType = ContainerEventType.ContainerStartedEvent, CreatedAt = c.StartedAtNanos });
            }
            catch (Exception e) when (e is ShimGoneException or IOException && !shims.IsAlive(c.StateDir))
            {
                // The shim died before the exit monitor told us (it will, and find this recorded).
                died = await shims.StateAsync(c.Id, c.StateDir, CancellationToken.None);
                if (died.Status != ShimStatus.Stopped) throw;
            }
            steps.Mark("shim start");
        }
        if (died is not null)
        {
            var exited = await exits.RecordExitAsync(c.Id, died);
            throw Fail.FailedPrecondition($"container {c.Id} is exited, not created: {exited?.Message ?? died.Message}");
        }
        LogStartSteps(c.Id, steps);
    }

    /// <summary>The shim of a created container started ahead of StartContainer (which then finds
    /// it, as after a daemon crash between the two); nothing when it has one or is not created.</summary>
    public async Task StartShimAheadAsync(string id, string runtimeHandler, CancellationToken ct)
    {
        using (await containers.LockAsync(id, ct))
        {
            if (containers.Find(id) is not { State: ContainerPhase.Created } c || HasShim(c)) return;
            await CreateShimAsync(c, runtimeHandler);
        }
    }

    /// <summary>`criruntime-shim create` for a created container (the caller holds its lock),
    /// watched by the exit monitor from then on. When it fails, whatever it made is undone and
    /// the container recorded exited (StartError, 128, the error as message) before the error
    /// is rethrown.</summary>
    private async Task CreateShimAsync(ContainerRecord c, string runtimeHandler, Action<string, double>? step = null)
    {
        try
        {
            await using var undo = new Rollback(log, $"StartContainer {c.Id}");
            undo.Add("remove shim state", () => { if (Directory.Exists(c.StateDir)) Directory.Delete(c.StateDir, recursive: true); });
            undo.Add("kill container", () => shims.KillAsync(c.StateDir, 9, CancellationToken.None));
            var config = ContainerConfig.Parser.ParseFrom(c.Config);
            var target = config.Linux?.SecurityContext?.NamespaceOptions is { Pid: NamespaceMode.Target } ns ? ns : null;
            // pid TARGET: the bundle names /proc/PID/ns/pid of the target's init as CreateContainer
            // found it. Had that init exited and its pid been reused, the container would join a
            // stranger's namespace: the same init before and after the shim joined rules that out.
            var pinned = target is null ? 0 : TargetPid(SpecFile.Load(c.BundleDir));
            async Task CheckTargetAsync(string when)
            {
                if (target is not null && (await TargetInitAsync(target, c.PodId)).Pid != pinned)
                    throw Fail.FailedPrecondition($"config.linux.security_context.namespace_options.target_id: container {target.TargetId} restarted {when}");
            }
            await CheckTargetAsync("since the container was created");
            await shims.CreateAsync(c.Id, c.BundleDir, c.StateDir, c.LogPath, runtimeHandler, CancellationToken.None, step);
            Testing.FaultPoints.Crash(Testing.FaultPoints.StartContainerAfterShim);
            await CheckTargetAsync("while the container was started");
            undo.Commit();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Recorded, then rethrown as it was.
            exits.RecordExitHeld(c.Id, new ShimState
            {
                Id = c.Id,
                Status = ShimStatus.Stopped,
                FinishedAt = clock.GetUtcNow(),
                ExitCode = StartErrorExitCode,
                Reason = "StartError",
                Message = e.Message,
            });
            throw;
        }
        // Watched from now on: a shim that dies before the start leaves an exited container.
        exits.Watch(c);
    }

    /// <summary>New resources of a created container that has no shim yet (the caller holds its
    /// lock): merged into the bundle's config.json as the shim merges an update, validated as at
    /// create, the file replaced atomically; the shim applies them when StartContainer runs it.</summary>
    public static void UpdateBundleResources(ContainerRecord c, Oci.LinuxResources update)
    {
        try
        {
            var current = SpecFile.Load(c.BundleDir);
            var merged = Oci.ResourceUpdate.Merge(current.Linux?.Resources, update);
            Cgroups.CgroupValidation.Validate(Cgroups.CgroupResourcesFromSpec.Map(merged));
            SpecFile.Save(c.BundleDir, current with { Linux = (current.Linux ?? new Oci.Linux()) with { Resources = merged } });
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException)
        {
            throw Fail.FailedPrecondition($"update resources of container {c.Id}: {e.Message}");
        }
    }

    /// <summary>The exit code of a container whose start failed before it ran (containerd's and Docker's).</summary>
    public const int StartErrorExitCode = 128;

    /// <summary>The pid in the spec's pid namespace path /proc/PID/ns/pid; 0 when there is none.</summary>
    private static int TargetPid(Oci.Spec spec)
    {
        var path = spec.Linux?.Namespaces?.FirstOrDefault(n => n.Type == "pid")?.Path ?? "";
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        return parts is ["proc", var pid, "ns", "pid"] && int.TryParse(pid, out var n) ? n : 0;
    }

    /// <summary>The container's stop signal (the kubelet's, else the image's, else SIGTERM), then
    /// SIGKILL after the timeout. Idempotent: an exited container is success.</summary>
    public async Task StopAsync(ContainerRecord c, TimeSpan timeout, CancellationToken ct)
    {
        if (c.State == ContainerPhase.Exited) return;
        if (c.State == ContainerPhase.Created)
        {
            using (await containers.LockAsync(c.Id, ct))
            {
                // Never started, nothing runs: it is exited as its shim's init would have been
                // when killed waiting for the start (SIGKILL: 137, Error).
                if (containers.Find(c.Id) is not { State: ContainerPhase.Created } now) return;
                if (!HasShim(now))
                {
                    exits.RecordExitHeld(c.Id, new ShimState { Id = c.Id, Status = ShimStatus.Stopped, FinishedAt = clock.GetUtcNow(), ExitCode = 137, Signal = 9, Reason = "Error" });
                    return;
                }
            }
            // Its shim's init waits for start (a start that failed half way): kill it.
            await shims.KillAsync(c.StateDir, 9, ct);
        }
        else
        {
            await shims.StopAsync(c.StateDir, StopSignal(c), timeout, ct);
        }
        var final = await shims.WaitAsync(c.Id, c.StateDir, ct);
        // The shim exits right after it has recorded the exit: waited for, the exit is recorded
        // with the shim gone, and the container's rootfs and cgroup are released by this call
        // rather than at RemoveContainer (as containerd deletes the task at its exit).
        await exits.ShimExitedAsync(c.Id, ShimExitGrace, ct);
        await exits.RecordExitAsync(c.Id, final);
    }

    /// <summary>How long StopContainer waits for a shim to exit once its container has.</summary>
    private static readonly TimeSpan ShimExitGrace = TimeSpan.FromSeconds(2);

    private int StopSignal(ContainerRecord c)
    {
        if (c.StopSignal.Length > 0) return StopSignals.Number(c.StopSignal);
        try
        {
            var image = images.Resolve(c.ImageId);
            if (image.Config.Config?.StopSignal is { Length: > 0 } s) return StopSignals.Number(s);
        }
        catch (CriException) { }
        return 15;
    }

    /// <summary>Removes a container, killing it first if it still runs. Idempotent.</summary>
    public async Task RemoveAsync(ContainerRecord c, CancellationToken ct)
    {
        var steps = new StepTimes();
        await StopAsync(c, TimeSpan.Zero, ct);
        steps.Mark("stop");
        using (await containers.LockAsync(c.Id, ct))
        {
            if (containers.Find(c.Id) is null) return;
            // What the exit released (normally everything: StopContainer waits for the shim) is
            // not done again; after a daemon restart, or when the release failed, it is done here.
            exits.RemoveOrphanedCgroup(c);
            steps.Mark("cgroup");
            if (!exits.Released(c.Id).Rootfs) rootfs.UnmountBundle(c.BundleDir);
            steps.Mark("unmount");
            if (c.Volume is not null) volumes.Release(c.Volume);
            if (c.LayerDir is not null) volumes.RemoveLayerDir(c.LayerDir);
            // Renamed away at once, deleted in the background (Trash): the record and the names
            // are gone as with a delete, without a journalled unlink per file on this path.
            _ = _trash.ShimStates.Discard(c.StateDir);
            steps.Mark("state dir");
            containers.Delete(c.Id, d => _ = _trash.Containers.Discard(d));
            steps.Mark("record+dir");
            imageUsage.Release(c.ImageId, c.Id);
            steps.Mark("image usage");
            exits.Forget(c.Id);
        }
        LogRemoveSteps(c.Id, steps);
        events.Publish(new ContainerEventResponse { ContainerId = c.Id, ContainerEventType = ContainerEventType.ContainerDeletedEvent, CreatedAt = NowNanos() });
    }

    [LoggerMessage(EventId = 420, Level = LogLevel.Debug, Message = "CreateContainer {ContainerId}: {Steps}")]
    private partial void LogCreateSteps(string containerId, StepTimes steps);

    [LoggerMessage(EventId = 421, Level = LogLevel.Debug, Message = "RemoveContainer {ContainerId}: {Steps}")]
    private partial void LogRemoveSteps(string containerId, StepTimes steps);

    [LoggerMessage(EventId = 422, Level = LogLevel.Debug, Message = "StartContainer {ContainerId}: {Steps}")]
    private partial void LogStartSteps(string containerId, StepTimes steps);
}
