using CriRuntime.Config;
using CriRuntime.Oci;
using CriRuntime.State;

namespace CriRuntime.Containers;

/// <summary>Runs once at start, before serving and before exits are resumed: removes what a
/// crash during CreateContainer left without a container record. CreateContainer writes the
/// record last, so a container directory without one (overlay mounted on bundle/rootfs; the shim
/// starts only at StartContainer, but a state dir &lt;state&gt;/c/&lt;id[..20]&gt; with a shim and a
/// cgroup is swept too) is half-made: a shim's container is killed, the cgroup named in the
/// bundle's config.json removed, the rootfs unmounted and both directories deleted, each step logged.
/// Shim state dirs that belong to no container at all are killed and removed the same way.
/// A recorded container's disk-quota volume that is not mounted (a reboot, whose loop devices are
/// gone) is attached and mounted again from the image file its record names.</summary>
public sealed partial class ContainerRecovery(CriRuntimeConfig config, ContainerStore containers, PodSandboxStore pods, ShimRunner shims,
    Storage.IWritableVolumes volumes, ILogger<ContainerRecovery> log)
{
    private static readonly TimeSpan KillTimeout = TimeSpan.FromSeconds(30);

    public async Task RunAsync(CancellationToken ct)
    {
        // What RemoveContainer renamed away and a crash kept from being deleted.
        var (containerTrash, shimStateTrash) = Trash.ForContainers(containers, config.State, log);
        containerTrash.Empty();
        shimStateTrash.Empty();
        foreach (var dir in containers.Orphans().ToList())
        {
            var id = Path.GetFileName(dir);
            try
            {
                await SweepAsync(id, dir, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogSweepFailed(e, id);
            }
        }
        // Pods' volumes first: a container's image file may be inside its pod's.
        foreach (var (id, volume, isPod) in pods.All.Select(p => (p.Id, p.Volume, true)).Concat(containers.All.Select(c => (c.Id, c.Volume, false))))
        {
            if (volume is null) continue;
            try
            {
                if (volumes.Reattach(volume) is not { } attached) continue;
                // On a new loop device: the record says which, for io limits on rootfs.
                if (isPod) pods.Update(id, p => p with { Volume = attached });
                else containers.Update(id, c => c with { Volume = attached });
                LogReattached(volume.Image, id);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogReattachFailed(e, id);
            }
        }
        var known = containers.All.Select(c => c.StateDir).ToHashSet(StringComparer.Ordinal);
        var shimDirs = Path.Combine(config.State, "c");
        foreach (var stateDir in Directory.Exists(shimDirs) ? Directory.GetDirectories(shimDirs) : [])
        {
            if (known.Contains(stateDir)) continue;
            try
            {
                await KillShimAsync(Path.GetFileName(stateDir), stateDir, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogSweepFailed(e, Path.GetFileName(stateDir));
            }
        }
    }

    private async Task SweepAsync(string id, string dir, CancellationToken ct)
    {
        if (id.Length >= 20) await KillShimAsync(id, Path.Combine(config.State, "c", id[..20]), ct);
        var bundle = Path.Combine(dir, "bundle");
        if (CgroupsPath(bundle) is { Length: > 0 } cgroup)
        {
            // The path was made for this container alone (pod cgroup/<id>): ours to remove.
            Cgroups.CgroupManagers.Create(cgroup).Destroy();
            LogSwept("cgroup " + cgroup, id);
        }
        Checkpoint.TmpfsContent.Release(Kernel.HostKernel.Instance, bundle);
        var rootfs = Path.Combine(bundle, "rootfs");
        if (Directory.Exists(rootfs))
        {
            RootfsMount.Unmount(rootfs);
            LogSwept("rootfs mount", id);
        }
        // Before the directory is deleted: a recursive delete would empty a mounted volume and
        // then fail on its mount point.
        var volume = Path.Combine(dir, Storage.FileVolumes.MountName);
        if (Directory.Exists(volume))
        {
            volumes.Unmount(volume);
            LogSwept("disk-quota volume", id);
        }
        Directory.Delete(dir, recursive: true);
        LogSwept("directory", id);
    }

    /// <summary>The cgroup named in the bundle's config.json. CreateContainer writes it atomically
    /// but not durably (it matters only while the container lives), so after a crash of the host
    /// it may be unreadable; the cgroup did not survive that either.</summary>
    private static string? CgroupsPath(string bundle)
    {
        if (!File.Exists(Path.Combine(bundle, SpecFile.ConfigName))) return null;
        try { return SpecFile.Load(bundle).Linux?.CgroupsPath; }
        catch (InvalidDataException) { return null; }
    }

    /// <summary>SIGKILLs the shim's container (created, waiting for a start that never comes),
    /// waits for the shim to record its exit, then removes the state dir.</summary>
    private async Task KillShimAsync(string id, string stateDir, CancellationToken ct)
    {
        if (!Directory.Exists(stateDir)) return;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(KillTimeout);
        await shims.KillAsync(stateDir, 9, timeout.Token);
        await shims.WaitAsync(id, stateDir, timeout.Token);
        LogSwept("shim's container", id);
        Directory.Delete(stateDir, recursive: true);
        LogSwept("shim state dir", id);
    }

    [LoggerMessage(EventId = 410, Level = LogLevel.Information, Message = "recovery: removed the {What} of half-created container {ContainerId}")]
    private partial void LogSwept(string what, string containerId);

    [LoggerMessage(EventId = 412, Level = LogLevel.Information, Message = "recovery: reattached the disk-quota volume {Image} of {ContainerId}")]
    private partial void LogReattached(string image, string containerId);

    [LoggerMessage(EventId = 413, Level = LogLevel.Warning, Message = "recovery: could not reattach the disk-quota volume of {ContainerId}")]
    private partial void LogReattachFailed(Exception e, string containerId);

    [LoggerMessage(EventId = 411, Level = LogLevel.Warning, Message = "recovery: could not clean up half-created container {ContainerId}")]
    private partial void LogSweepFailed(Exception e, string containerId);
}
