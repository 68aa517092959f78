using System.Text;
using CriRuntime.Config;
using CriRuntime.Files;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Storage;

/// <summary>The btrfs backend (docs/storage.md): a container's writable layer is a subvolume of
/// its own at its mount point (<c>containers/ID/volume</c>), limited by a qgroup limit on its
/// level-0 qgroup 0/SUBVOLID. The limit is on referenced bytes (max_rfer), not exclusive ones:
/// overlayfs copies a file up by reflinking it when lower and upper are on the same btrfs, so the
/// copy shares its extents with the image layer and would cost nothing against max_excl until
/// rewritten; max_rfer counts what the layer refers to, as a copy-up costs its full size on the
/// file-backed volume. A pod's total is a level-1 qgroup 1/N (N: the id of the pod's own
/// subvolume, <c>pods/ID/volume</c>, so unique without a counter) with the same kind of limit,
/// holding its containers' subvolumes: their own limits and the pod's hold together. Usage comes
/// from the qgroup's accounting in the quota tree, never a tree walk. Quotas are enabled on the
/// file system the first time a quota is asked for (a node-wide change: it costs every write on
/// that file system some accounting, and a rescan of what is there).
///
/// A deleted subvolume is dropped by the kernel's cleaner thread later; its level-0 qgroup goes
/// with it (the kernel removes it, Linux 6.x), but a level-1 qgroup cannot be removed while a
/// member is still being dropped (EBUSY). Such a pod qgroup is written to a list
/// (<c>volumes/btrfs-stale-qgroups</c>) and removed at the next create, release or start.</summary>
public sealed partial class BtrfsVolumes(CriRuntimeConfig config, IHostKernel kernel, ILogger<BtrfsVolumes> log) : IWritableVolumes
{
    public const ulong Level1 = 1UL << 48;
    private readonly Lock _lock = new();
    private bool _quotasOn;

    public string Backend => "btrfs (a subvolume per writable layer, a qgroup limit on referenced bytes)";

    private string Root => config.Root;
    public string StaleFile => Path.Combine(Root, "volumes", "btrfs-stale-qgroups");

    public WritableVolume Create(string image, string mountPoint, ulong sizeBytes, WritableVolume? pod = null)
    {
        Prepare();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(mountPoint))!);
        var id = kernel.BtrfsSubvolumeCreate(mountPoint);
        try
        {
            kernel.BtrfsQgroupLimit(Root, id, sizeBytes);
            // While the subvolume is empty: the kernel then updates the pod's numbers at once
            // instead of marking the accounting inconsistent.
            if (pod is { Qgroup: >= Level1 }) kernel.BtrfsQgroupAssign(Root, id, pod.Qgroup);
        }
        catch
        {
            kernel.BtrfsSubvolumeDelete(mountPoint);
            throw;
        }
        var volume = new WritableVolume("", mountPoint, sizeBytes) { Qgroup = id };
        Directory.CreateDirectory(volume.Upper);
        Directory.CreateDirectory(volume.Work);
        LogCreated(mountPoint, HostKernel.QgroupName(id), sizeBytes);
        return volume;
    }

    public WritableVolume CreateForPod(string image, string mountPoint, ulong sizeBytes)
    {
        Prepare();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(mountPoint))!);
        var id = kernel.BtrfsSubvolumeCreate(mountPoint);
        var group = Level1 | id;
        try
        {
            kernel.BtrfsQgroupCreate(Root, group, create: true);
            try { kernel.BtrfsQgroupLimit(Root, group, sizeBytes); }
            catch
            {
                kernel.BtrfsQgroupCreate(Root, group, create: false);
                throw;
            }
        }
        catch
        {
            kernel.BtrfsSubvolumeDelete(mountPoint);
            throw;
        }
        LogCreated(mountPoint, HostKernel.QgroupName(group), sizeBytes);
        return new WritableVolume("", mountPoint, sizeBytes) { Qgroup = group };
    }

    /// <summary>A subvolume in the pod's, a member of the pod's qgroup (no limit of its own).</summary>
    public void MakeLayerDir(string layerDir, WritableVolume pod)
    {
        if (pod.Qgroup < Level1)
        {
            Directory.CreateDirectory(layerDir);
            return;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(layerDir))!);
        var id = kernel.BtrfsSubvolumeCreate(layerDir);
        try { kernel.BtrfsQgroupAssign(Root, id, pod.Qgroup); }
        catch
        {
            kernel.BtrfsSubvolumeDelete(layerDir);
            throw;
        }
    }

    public void RemoveLayerDir(string layerDir)
    {
        if (!Directory.Exists(layerDir)) return;
        DeleteSubvolume(layerDir);
    }

    /// <summary>Nothing to attach: a subvolume outlives the daemon and a reboot.</summary>
    public WritableVolume? Reattach(WritableVolume volume) => null;

    public void Release(WritableVolume volume)
    {
        // A pod's: the layer subvolumes of containers a crash left half-made are still inside,
        // and a subvolume holding subvolumes cannot be deleted.
        var layers = Path.Combine(volume.MountPoint, "layers");
        if (volume.Qgroup >= Level1 && Directory.Exists(layers))
            foreach (var layer in Directory.GetDirectories(layers)) DeleteSubvolume(layer);
        DeleteSubvolume(volume.MountPoint);
        if (volume.Qgroup >= Level1)
        {
            lock (_lock)
            {
                var stale = ReadStale();
                stale.Add(volume.Qgroup);
                WriteStale(stale);
            }
        }
        Reap();
    }

    /// <summary>For the sweep of a half-made container or pod: its subvolume goes, so that the
    /// directory around it can be deleted, and a pod's level-1 qgroup (named after the
    /// subvolume) with it.</summary>
    public void Unmount(string mountPoint)
    {
        if (!Directory.Exists(mountPoint)) return;
        ulong? id;
        try { id = kernel.BtrfsSubvolumeIdOf(mountPoint); }
        catch (KernelException) { id = null; }
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(mountPoint));
        var isPod = Path.GetDirectoryName(Path.GetDirectoryName(full)) == Path.Combine(Path.GetFullPath(Root), "pods");
        Release(new WritableVolume("", mountPoint, 0) { Qgroup = isPod && id is { } i ? Level1 | i : 0 });
    }

    /// <summary>The qgroup's referenced bytes against its limit. Inodes are not counted by qgroups:
    /// reported as 0. The numbers are those of the last transaction commit (a sync, or at most
    /// the commit interval, 30 s by default).</summary>
    public FsUsage? Usage(WritableVolume volume)
    {
        if (volume.Qgroup == 0) return null;
        try
        {
            if (kernel.BtrfsQgroupUsage(Root, volume.Qgroup) is not { } u) return null;
            var used = Math.Min(u.Referenced, volume.SizeBytes);
            return new FsUsage(FsUsage.BtrfsMagic, volume.SizeBytes, volume.SizeBytes - used, 0, 0);
        }
        catch (KernelException) { return null; }
    }

    /// <summary>At start: pod qgroups a previous daemon could not remove yet.</summary>
    public void Start() => Reap();

    /// <summary>A subvolume is deleted with its contents by one ioctl; a plain directory there
    /// (EINVAL: not a subvolume's root) is deleted as a tree.</summary>
    private void DeleteSubvolume(string path)
    {
        try { kernel.BtrfsSubvolumeDelete(path); }
        catch (KernelException e) when (e.Errno == Errno.ENOENT) { }
        catch (KernelException e) when (e.Errno == Errno.EINVAL && Directory.Exists(path)) { Directory.Delete(path, recursive: true); }
    }

    private void Prepare()
    {
        EnsureQuotas();
        Reap();
    }

    /// <summary>Quotas on the storage root's file system, enabled the first time a quota is asked
    /// for, never by a daemon that only runs containers without one.</summary>
    private void EnsureQuotas()
    {
        if (_quotasOn) return;
        lock (_lock)
        {
            if (_quotasOn) return;
            if (!kernel.BtrfsQuotaEnabled(Root))
            {
                LogEnablingQuotas(Root);
                kernel.BtrfsQuotaEnable(Root);
            }
            _quotasOn = true;
        }
    }

    /// <summary>Removes the listed pod qgroups whose members the cleaner has dropped; EBUSY keeps
    /// one for the next time, ENOENT (removed already) drops it from the list.</summary>
    private void Reap()
    {
        lock (_lock)
        {
            var stale = ReadStale();
            if (stale.Count == 0) return;
            var left = new SortedSet<ulong>();
            foreach (var group in stale)
            {
                try
                {
                    kernel.BtrfsQgroupCreate(Root, group, create: false);
                    LogRemovedQgroup(HostKernel.QgroupName(group));
                }
                catch (KernelException e) when (e.Errno == Errno.ENOENT) { }
                catch (KernelException e) when (e.Errno == Errno.EBUSY) { left.Add(group); }
                catch (KernelException e)
                {
                    LogRemoveQgroupFailed(e, HostKernel.QgroupName(group));
                    left.Add(group);
                }
            }
            if (!left.SetEquals(stale)) WriteStale(left);
        }
    }

    private SortedSet<ulong> ReadStale()
    {
        if (!File.Exists(StaleFile)) return [];
        var set = new SortedSet<ulong>();
        foreach (var line in File.ReadAllLines(StaleFile))
            if (ulong.TryParse(line.Trim(), out var id)) set.Add(id);
        return set;
    }

    private void WriteStale(SortedSet<ulong> stale)
    {
        if (stale.Count == 0)
        {
            File.Delete(StaleFile);
            return;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(StaleFile)!);
        AtomicFile.Write(StaleFile, Encoding.UTF8.GetBytes(string.Concat(stale.Select(s => s + "\n"))));
    }

    [LoggerMessage(EventId = 1420, Level = LogLevel.Warning, Message = "disk quota: enabling btrfs quotas on the file system of {Root} (node-wide: every write on it is accounted from now on)")]
    private partial void LogEnablingQuotas(string root);

    [LoggerMessage(EventId = 1421, Level = LogLevel.Debug, Message = "disk quota: subvolume {Path} with qgroup {Qgroup} limited to {Bytes} bytes referenced")]
    private partial void LogCreated(string path, string qgroup, ulong bytes);

    [LoggerMessage(EventId = 1422, Level = LogLevel.Debug, Message = "disk quota: removed pod qgroup {Qgroup}")]
    private partial void LogRemovedQgroup(string qgroup);

    [LoggerMessage(EventId = 1423, Level = LogLevel.Warning, Message = "disk quota: could not remove pod qgroup {Qgroup}; kept for the next try")]
    private partial void LogRemoveQgroupFailed(Exception e, string qgroup);
}
