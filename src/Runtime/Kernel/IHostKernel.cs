using CriRuntime.Interop;

namespace CriRuntime.Kernel;

/// <summary>The daemon's side of the kernel boundary: every call that changes the host (mounts,
/// namespaces, owners, modes, xattrs, device nodes) or asks it about a file goes through here, so
/// rootfs mounting, namespace pinning, layer extraction and spec building are tested without root
/// against <c>tests/Unit/Kernel/RecordingHostKernel.cs</c> (as the shim's code is against its
/// IKernel and RecordingKernel). Failures are <see cref="KernelException"/> (operation, path,
/// errno). <see cref="HostKernel"/> is the real one.</summary>
public interface IHostKernel
{
    void Mount(string? source, string target, string? fstype, ulong flags, string? data);
    void Umount2(string target, int flags);
    /// <summary>Unshares namespaces of the calling thread (CLONE_NEW* flags).</summary>
    void Unshare(int flags);
    /// <summary>The calling thread joins the namespace file at <paramref name="path"/>.</summary>
    void Setns(string path, int nstype);
    int Gettid();
    void Sethostname(string hostname);
    /// <summary>Sets the network device <paramref name="name"/> of this process's network namespace
    /// up or down (SIOCSIFFLAGS, IFF_UP). A veth whose end is down neither takes nor sends a packet.</summary>
    void SetLinkUp(string name, bool up);

    /// <summary>S_IFMT bits of a path (a final symlink not followed), or null when it does not exist.</summary>
    uint? FileType(string path);
    /// <summary>Mode and device number of a path, or null when it does not exist.</summary>
    (uint Mode, uint Major, uint Minor)? DeviceInfo(string path, bool followSymlinks = true);
    void Mknod(string path, uint mode, ulong dev);
    void Link(string existing, string newPath);
    /// <summary>rename(2): never a copy (EXDEV across file systems, where File.Move would copy).</summary>
    void Rename(string oldPath, string newPath);
    void Chown(string path, uint uid, uint gid);
    void Lchown(string path, int uid, int gid);
    /// <summary>Permission bits including setuid/setgid/sticky.</summary>
    void Chmod(string path, uint mode);
    void Lsetxattr(string path, string name, ReadOnlySpan<byte> value);
    /// <summary>An xattr's value, or null when the file does not have it.</summary>
    byte[]? Lgetxattr(string path, string name);
    /// <summary>atime and mtime of the path itself, never a symlink's target.</summary>
    void Lutimes(string path, DateTimeOffset atime, DateTimeOffset mtime);

    FdHandle Open(string path, int flags);
    /// <summary>A detached copy of a mount, idmapped to the user namespace <paramref name="idmapTo"/> when given.</summary>
    FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo);
    void MoveMount(FdHandle tree, string target);
    /// <summary>MOUNT_ATTR_* flags (read-only, nosuid, ...) on a detached mount.</summary>
    void SetMountAttributes(FdHandle tree, ulong attrs, string what);
    /// <summary>The calling thread's cwd to the directory <paramref name="dir"/>, then its root there.</summary>
    void ChrootTo(FdHandle dir, string what);

    /// <summary>LOOP_CTL_GET_FREE on /dev/loop-control: the number of a free loop device.</summary>
    int LoopGetFree();
    /// <summary>LOOP_CONFIGURE: <paramref name="backingFile"/> behind <paramref name="device"/>,
    /// autoclear (the device detaches itself when its last user, a mount or the returned handle,
    /// lets go) and direct I/O when asked (no second copy in the page cache). The caller keeps the
    /// handle until the device is mounted.</summary>
    FdHandle LoopConfigure(string device, string backingFile, bool directIo);
    /// <summary>Creates <paramref name="target"/> (it must not exist) as a sparse copy of
    /// <paramref name="source"/>'s data extents, then sets its length to <paramref name="size"/>.</summary>
    void CopySparse(string source, string target, ulong size);
    /// <summary>statfs(2): the size and use of the file system holding <paramref name="path"/>.</summary>
    FsUsage Statfs(string path);

    /// <summary>BTRFS_IOC_SUBVOL_CREATE: <paramref name="path"/> (it must not exist) made a btrfs
    /// subvolume; its id (BTRFS_IOC_INO_LOOKUP), which is also its level-0 qgroup's.</summary>
    ulong BtrfsSubvolumeCreate(string path);
    /// <summary>The id of the subvolume whose root <paramref name="path"/> is (BTRFS_IOC_INO_LOOKUP of
    /// it and of its parent differ), or null when it is a plain directory.</summary>
    ulong? BtrfsSubvolumeIdOf(string path);
    /// <summary>BTRFS_IOC_SNAP_DESTROY: the subvolume at <paramref name="path"/> and everything in it.</summary>
    void BtrfsSubvolumeDelete(string path);
    /// <summary>BTRFS_IOC_TREE_SEARCH of the quota tree: false when quotas are off (no quota tree).</summary>
    bool BtrfsQuotaEnabled(string path);
    /// <summary>BTRFS_IOC_QUOTA_CTL(ENABLE) on the file system holding <paramref name="path"/>.</summary>
    void BtrfsQuotaEnable(string path);
    /// <summary>BTRFS_IOC_QGROUP_CREATE: makes (or, <paramref name="create"/> false, removes) a qgroup.</summary>
    void BtrfsQgroupCreate(string path, ulong qgroupId, bool create);
    /// <summary>BTRFS_IOC_QGROUP_ASSIGN: <paramref name="child"/> a member of <paramref name="parent"/>.</summary>
    void BtrfsQgroupAssign(string path, ulong child, ulong parent);
    /// <summary>BTRFS_IOC_QGROUP_LIMIT: max_rfer of the qgroup (0: no limit).</summary>
    void BtrfsQgroupLimit(string path, ulong qgroupId, ulong maxReferencedBytes);
    /// <summary>The qgroup's accounting (its qgroup info item in the quota tree, BTRFS_IOC_TREE_SEARCH):
    /// bytes referenced and exclusive; null when there is no such qgroup.</summary>
    (ulong Referenced, ulong Exclusive)? BtrfsQgroupUsage(string path, ulong qgroupId);

    /// <summary>FS_IOC_FSSETXATTR: the directory's project id, and FS_XFLAG_PROJINHERIT so that
    /// what is made in it inherits the id.</summary>
    void SetProjectId(string dir, uint projectId);
    /// <summary>quotactl_fd(Q_GETINFO, PRJQUOTA): whether project quota accounting is on for the
    /// file system holding <paramref name="path"/>.</summary>
    bool ProjectQuotaEnabled(string path);
    /// <summary>The project's hard block limit (0: none): Q_XSETQLIM on XFS, Q_SETQUOTA elsewhere.</summary>
    void SetProjectLimit(string path, bool xfs, uint projectId, ulong bytes);
    /// <summary>The project's use (Q_XGETQUOTA on XFS, Q_GETQUOTA elsewhere): bytes and inodes.</summary>
    (ulong Bytes, ulong Inodes) ProjectUsage(string path, bool xfs, uint projectId);
}

/// <summary>What statfs(2) says of a file system, in bytes and inodes.</summary>
public readonly record struct FsUsage(long Type, ulong TotalBytes, ulong FreeBytes, ulong Inodes, ulong FreeInodes)
{
    public const long Ext4Magic = 0xEF53, BtrfsMagic = 0x9123683E, XfsMagic = 0x58465342, NsfsMagic = 0x6E736673;
    public ulong UsedBytes => TotalBytes - FreeBytes;
    public ulong UsedInodes => Inodes - FreeInodes;
}
