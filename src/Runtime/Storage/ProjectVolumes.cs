using CriRuntime.Config;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Storage;

/// <summary>The project-quota backend (docs/storage.md), for a storage root on XFS mounted with
/// prjquota or ext4 with the project feature mounted with prjquota: a container's writable layer
/// is a directory (<c>containers/ID/volume</c>) with a project id of its own and
/// FS_XFLAG_PROJINHERIT (FS_IOC_FSSETXATTR), so everything made below it is charged to the
/// project; the limit is the project's hard block limit (quotactl Q_XSETQLIM on XFS, Q_SETQUOTA
/// with PRJQUOTA on ext4), the usage its accounting (Q_XGETQUOTA / Q_GETQUOTA: bytes and inodes).
/// A pod's total is a project on the pod's directory; its containers without a quota of their own
/// keep their layers below it and inherit its id. A file has one project id, so a container with a
/// quota of its own in such a pod is charged to its own project only, not also to the pod's.
///
/// Project ids are allocated from <see cref="FirstId"/> up, one file per id under
/// <c>volumes/projects/</c> naming the directory it was given to (made with O_EXCL, so two
/// creates never share one; they survive a restart); the record keeps the id too. Release
/// lifts the limit, deletes the directory and frees the id; a start frees ids whose directory is
/// gone (a crash between allocation and record).</summary>
public sealed partial class ProjectVolumes(CriRuntimeConfig config, IHostKernel kernel, ILogger<ProjectVolumes> log) : IWritableVolumes
{
    /// <summary>Above the ids distributions and operators hand out by hand (/etc/projid).</summary>
    public const uint FirstId = 100_000;
    private readonly Lock _lock = new();
    private bool? _xfs;

    public string Backend => "project (a project id per writable layer, " + (Xfs ? "XFS" : "ext4") + " project quotas)";

    private string Root => config.Root;
    public string IdDir => Path.Combine(Root, "volumes", "projects");
    private bool Xfs => _xfs ??= kernel.Statfs(Root).Type == FsUsage.XfsMagic;

    public WritableVolume Create(string image, string mountPoint, ulong sizeBytes, WritableVolume? pod = null)
    {
        var id = Allocate(mountPoint);
        try
        {
            Directory.CreateDirectory(mountPoint);
            // Before anything is made inside: the upper and work dirs inherit the id.
            kernel.SetProjectId(mountPoint, id);
            kernel.SetProjectLimit(Root, Xfs, id, sizeBytes);
        }
        catch
        {
            if (Directory.Exists(mountPoint)) Directory.Delete(mountPoint, recursive: true);
            Free(id);
            throw;
        }
        var volume = new WritableVolume("", mountPoint, sizeBytes) { ProjectId = id };
        Directory.CreateDirectory(volume.Upper);
        Directory.CreateDirectory(volume.Work);
        LogCreated(mountPoint, id, sizeBytes);
        return volume;
    }

    /// <summary>Nothing mounted: the directory and its project id outlive a restart and a reboot.</summary>
    public WritableVolume? Reattach(WritableVolume volume) => null;

    public void Release(WritableVolume volume)
    {
        if (volume.ProjectId != 0)
        {
            try { kernel.SetProjectLimit(Root, Xfs, volume.ProjectId, 0); }
            catch (KernelException e) { LogLimitNotLifted(e, volume.ProjectId); }
        }
        if (Directory.Exists(volume.MountPoint)) Directory.Delete(volume.MountPoint, recursive: true);
        if (volume.ProjectId != 0) Free(volume.ProjectId);
    }

    /// <summary>A plain directory: nothing to unmount before it is deleted.</summary>
    public void Unmount(string mountPoint) { }

    public FsUsage? Usage(WritableVolume volume)
    {
        if (volume.ProjectId == 0 || !Directory.Exists(volume.MountPoint)) return null;
        try
        {
            var (bytes, inodes) = kernel.ProjectUsage(Root, Xfs, volume.ProjectId);
            var used = Math.Min(bytes, volume.SizeBytes);
            return new FsUsage(Xfs ? FsUsage.XfsMagic : FsUsage.Ext4Magic, volume.SizeBytes, volume.SizeBytes - used, inodes, 0);
        }
        catch (KernelException) { return null; }
    }

    /// <summary>At start: frees the ids whose directory is gone (their limit lifted first).</summary>
    public void Start()
    {
        foreach (var (id, owner) in Allocated())
        {
            if (Directory.Exists(owner)) continue;
            try { kernel.SetProjectLimit(Root, Xfs, id, 0); }
            catch (KernelException e) { LogLimitNotLifted(e, id); }
            Free(id);
        }
    }

    /// <summary>The ids given out and the directory each was given to.</summary>
    public IEnumerable<(uint Id, string Owner)> Allocated()
    {
        if (!Directory.Exists(IdDir)) yield break;
        foreach (var f in Directory.GetFiles(IdDir))
            if (uint.TryParse(Path.GetFileName(f), out var id)) yield return (id, File.ReadAllText(f).Trim());
    }

    /// <summary>The smallest free id from <see cref="FirstId"/>, taken by creating its file.</summary>
    private uint Allocate(string owner)
    {
        lock (_lock)
        {
            Directory.CreateDirectory(IdDir);
            var used = Allocated().Select(a => a.Id).ToHashSet();
            for (var id = FirstId; id < uint.MaxValue; id++)
            {
                if (used.Contains(id)) continue;
                try
                {
                    using var f = new FileStream(Path.Combine(IdDir, id.ToString(System.Globalization.CultureInfo.InvariantCulture)), FileMode.CreateNew);
                    f.Write(System.Text.Encoding.UTF8.GetBytes(owner + "\n"));
                    f.Flush(flushToDisk: true);
                    return id;
                }
                catch (IOException) when (File.Exists(Path.Combine(IdDir, id.ToString(System.Globalization.CultureInfo.InvariantCulture)))) { }
            }
            throw Errors.Fail.ResourceExhausted("disk quota: no free project id");
        }
    }

    private void Free(uint id) => File.Delete(Path.Combine(IdDir, id.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    [LoggerMessage(EventId = 1430, Level = LogLevel.Debug, Message = "disk quota: {Path} is project {ProjectId}, limited to {Bytes} bytes")]
    private partial void LogCreated(string path, uint projectId, ulong bytes);

    [LoggerMessage(EventId = 1431, Level = LogLevel.Warning, Message = "disk quota: could not lift the limit of project {ProjectId}")]
    private partial void LogLimitNotLifted(Exception e, uint projectId);
}
