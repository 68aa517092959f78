using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>btrfs subvolumes and qgroups, project ids and quotactl: what the daemon's disk-quota
/// backends (src/Runtime/Storage) need besides loop devices. Numbers from linux/btrfs.h,
/// linux/fs.h, linux/quota.h and linux/dqblk_xfs.h (checked against the headers with a C probe).</summary>
internal static unsafe partial class Libc
{
    public const long BTRFS_SUPER_MAGIC = 0x9123683E, XFS_SUPER_MAGIC = 0x58465342;

    public const ulong BTRFS_IOC_SUBVOL_CREATE = 0x5000940E, BTRFS_IOC_SNAP_DESTROY = 0x5000940F,
        BTRFS_IOC_TREE_SEARCH = 0xD0009411, BTRFS_IOC_INO_LOOKUP = 0xD0009412, BTRFS_IOC_QUOTA_CTL = 0xC0109428,
        BTRFS_IOC_QGROUP_ASSIGN = 0x40189429, BTRFS_IOC_QGROUP_CREATE = 0x4010942A, BTRFS_IOC_QGROUP_LIMIT = 0x8030942B;
    public const ulong BTRFS_QUOTA_CTL_ENABLE = 1, BTRFS_QGROUP_LIMIT_MAX_RFER = 1;
    public const ulong BTRFS_QUOTA_TREE_OBJECTID = 8, BTRFS_FIRST_FREE_OBJECTID = 256;
    public const uint BTRFS_QGROUP_INFO_KEY = 242;

    /// <summary>struct btrfs_ioctl_vol_args: an fd (unused here) and a name, 4096 bytes.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 4096)]
    public struct BtrfsVolArgs { public long Fd; public fixed byte Name[4088]; }

    /// <summary>struct btrfs_ioctl_ino_lookup_args: treeid 0 asks for the fd's subvolume.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 4096)]
    public struct BtrfsInoLookupArgs { public ulong TreeId, ObjectId; }

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsQuotaCtlArgs { public ulong Cmd, Status; }

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsQgroupAssignArgs { public ulong Assign, Src, Dst; }

    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsQgroupCreateArgs { public ulong Create, QgroupId; }

    /// <summary>struct btrfs_ioctl_qgroup_limit_args: the qgroup and a struct btrfs_qgroup_limit.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct BtrfsQgroupLimitArgs { public ulong QgroupId, Flags, MaxRfer, MaxExcl, RsvRfer, RsvExcl; }

    /// <summary>struct btrfs_ioctl_search_args: a 104-byte key, then the items found
    /// (each a 32-byte struct btrfs_ioctl_search_header and its item).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 4096)]
    public struct BtrfsSearchArgs
    {
        public ulong TreeId, MinObjectId, MaxObjectId, MinOffset, MaxOffset, MinTransId, MaxTransId;
        public uint MinType, MaxType, NrItems, Unused;
        public ulong Unused1, Unused2, Unused3, Unused4;
        public fixed byte Buf[4096 - 104];
    }

    public const ulong FS_IOC_FSGETXATTR = 0x801C581F, FS_IOC_FSSETXATTR = 0x401C5820;
    public const uint FS_XFLAG_PROJINHERIT = 0x200;

    /// <summary>struct fsxattr (28 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FsXattr { public uint XFlags, ExtSize, NExtents, ProjId, CowExtSize; public fixed byte Pad[8]; }

    public const int PRJQUOTA = 2;
    public const uint Q_GETINFO = 0x800005, Q_GETQUOTA = 0x800007, Q_SETQUOTA = 0x800008, Q_XGETQUOTA = 0x5803, Q_XSETQLIM = 0x5804;
    public const uint QIF_BLIMITS = 1, QIF_SPACE = 2;
    public const ushort FS_DQ_BHARD = 1 << 3, FS_DQ_BSOFT = 1 << 2;
    public const sbyte FS_PROJ_QUOTA = 2;
    public const sbyte FS_DQUOT_VERSION = 1;

    /// <summary>QCMD(cmd, type).</summary>
    public static uint QCmd(uint cmd, int type) => (cmd << 8) | ((uint)type & 0xff);

    /// <summary>struct if_dqblk (72 bytes): limits in 1 KiB blocks, space in bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IfDqblk
    {
        public ulong BHardLimit, BSoftLimit, CurSpace, IHardLimit, ISoftLimit, CurInodes, BTime, ITime;
        public uint Valid;
    }

    /// <summary>struct fs_disk_quota (112 bytes): XFS's form, limits and counts in 512-byte basic blocks.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 112)]
    public struct FsDiskQuota
    {
        public sbyte Version, Flags;
        public ushort FieldMask;
        public uint Id;
        public ulong BlkHardLimit, BlkSoftLimit, InoHardLimit, InoSoftLimit, BCount, ICount;
    }

    /// <summary>struct if_dqinfo (24 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IfDqinfo { public ulong BGrace, IGrace; public uint Flags, Valid; }

    private const long SYS_quotactl_fd = 443;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall4(long number, long a, long b, long c, void* d);

    /// <summary>quotactl_fd(2) (Linux 5.14): the file system is named by any open file on it, so no
    /// block device has to be found.</summary>
    public static int QuotactlFd(int fd, uint cmd, uint id, void* addr) => (int)Syscall4(SYS_quotactl_fd, fd, cmd, id, addr);
}
