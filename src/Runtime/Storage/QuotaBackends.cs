using CriRuntime.Config;
using CriRuntime.Kernel;

namespace CriRuntime.Storage;

/// <summary>Which disk-quota backend the daemon uses, decided once at start from
/// <c>[storage] quota_backend</c> and the file system of the storage root (statfs f_type):
/// btrfs → qgroups (<see cref="BtrfsVolumes"/>); XFS or ext4 with project quota accounting on →
/// project quotas (<see cref="ProjectVolumes"/>); anything else → the file-backed volume
/// (<see cref="FileVolumes"/> behind <see cref="VolumePool"/>). An explicit choice the file system
/// cannot serve stops the daemon with a message naming the key.</summary>
public static class QuotaBackends
{
    public const string Volume = "volume", Btrfs = "btrfs", Project = "project", Auto = "auto";

    public static string Choose(string configured, string root, IHostKernel kernel)
    {
        var type = kernel.Statfs(root).Type;
        bool ProjectQuotas() => type is FsUsage.XfsMagic or FsUsage.Ext4Magic && kernel.ProjectQuotaEnabled(root);
        return configured switch
        {
            Volume => Volume,
            Btrfs when type == FsUsage.BtrfsMagic => Btrfs,
            Btrfs => throw new ConfigException(
                $"storage.quota_backend: \"btrfs\" needs the storage root on btrfs; {root} is on {Name(type)}"),
            Project when ProjectQuotas() => Project,
            Project => throw new ConfigException(
                $"storage.quota_backend: \"project\" needs the storage root on XFS (prjquota) or ext4 (project feature, prjquota) with project quotas on; {root} is on {Name(type)}{(type is FsUsage.XfsMagic or FsUsage.Ext4Magic ? " without them" : "")}"),
            _ when type == FsUsage.BtrfsMagic => Btrfs,
            _ when ProjectQuotas() => Project,
            _ => Volume,
        };
    }

    private static string Name(long type) => type switch
    {
        FsUsage.BtrfsMagic => "btrfs",
        FsUsage.XfsMagic => "xfs",
        FsUsage.Ext4Magic => "ext4",
        0x01021994 => "tmpfs",
        0x794C7630 => "overlayfs",
        _ => $"a file system of type 0x{type:x}",
    };
}
