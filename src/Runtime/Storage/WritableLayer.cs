using CriRuntime.State;

namespace CriRuntime.Storage;

/// <summary>What a container's writable layer uses, for ContainerStats and ImageFsInfo.</summary>
public static class WritableLayer
{
    /// <summary>A disk-quota volume answers from its own accounting (statfs: blocks and inodes in
    /// use, ext4's metadata included); without one the overlay upper dir is walked (also when it is
    /// in the pod's volume, which the pod's containers share).</summary>
    public static (ulong Bytes, ulong Inodes) Usage(ContainerRecord c, string containerDir, IWritableVolumes volumes)
    {
        if (c.Volume is not null)
            return volumes.Usage(c.Volume) is { } u ? (u.UsedBytes, u.UsedInodes) : (0, 0);
        return Containers.DiskUsage.Measure(Path.Combine(c.LayerDir ?? containerDir, "upper"));
    }
}

/// <summary>Status verbose info "storage": the disk-quota backend, the node default, each volume.</summary>
public sealed record StorageInfo(string Backend, ulong RootfsQuotaBytes, IReadOnlyList<VolumeInfo> Volumes, IReadOnlyList<WarmVolumes> Warm);

/// <summary>The volume pool: volumes of a size made ahead, ready for the next containers.</summary>
public sealed record WarmVolumes(ulong SizeBytes, int Ready);

public sealed record VolumeInfo(string ContainerId, ulong SizeBytes, string MountPoint);
