using System.Text;
using CriRuntime.Interop;

namespace CriRuntime.Kernel;

/// <summary>The real kernel: each method is one call of Core's <see cref="Libc"/>, a failure
/// turned into a <see cref="KernelException"/> by <see cref="Errno"/>.</summary>
public sealed class HostKernel : IHostKernel
{
    public static readonly HostKernel Instance = new();

    public void Mount(string? source, string target, string? fstype, ulong flags, string? data) =>
        Errno.Check(Libc.Mount(source, target, fstype, flags, data),
            (flags & Libc.MS_BIND) != 0 ? $"bind mount {source} on" : $"mount {fstype} on", target);

    public void Umount2(string target, int flags) => Errno.Check(Libc.Umount2(target, flags), "umount", target);

    public void Unshare(int flags) => Errno.Check(Libc.Unshare(flags), $"unshare({Namespaces(flags)})", "");

    public void Setns(string path, int nstype)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY);
        Errno.Check(Libc.Setns(fd.Fd, nstype), $"setns({Namespaces(nstype)})", path);
    }

    /// <summary>"net|uts" for CLONE_NEWNET | CLONE_NEWUTS, so a failure names the namespaces.</summary>
    private static string Namespaces(int flags)
    {
        (int Flag, string Name)[] known =
        [
            (Libc.CLONE_NEWNET, "net"), (Libc.CLONE_NEWIPC, "ipc"), (Libc.CLONE_NEWUTS, "uts"), (Libc.CLONE_NEWPID, "pid"),
            (Libc.CLONE_NEWUSER, "user"), (Libc.CLONE_NEWNS, "mnt"), (Libc.CLONE_NEWCGROUP, "cgroup"),
        ];
        var names = known.Where(k => (flags & k.Flag) != 0).Select(k => k.Name).ToList();
        var rest = known.Aggregate(flags, (f, k) => f & ~k.Flag);
        if (rest != 0 || names.Count == 0) names.Add($"0x{rest:x}");
        return string.Join('|', names);
    }

    public int Gettid() => Libc.Gettid();

    public unsafe void Sethostname(string hostname)
    {
        var bytes = Encoding.UTF8.GetBytes(hostname);
        fixed (byte* p = bytes)
            Errno.Check(Libc.Sethostname(p, (nuint)bytes.Length), "sethostname", hostname);
    }

    public unsafe void SetLinkUp(string name, bool up)
    {
        const int AF_INET = 2, SOCK_DGRAM = 2, IFNAMSIZ = 16;
        const ulong SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914;
        const short IFF_UP = 1;
        var bytes = Encoding.ASCII.GetBytes(name);
        if (bytes.Length is 0 or >= IFNAMSIZ) throw Errno.Exception("SIOCSIFFLAGS", name, Errno.EINVAL);
        var fd = Libc.Socket(AF_INET, SOCK_DGRAM | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0) throw Errno.Last("socket", name);
        try
        {
            // struct ifreq: the name (IFNAMSIZ bytes), then a union whose ifr_flags is a short.
            var ifr = stackalloc byte[40];
            new Span<byte>(ifr, 40).Clear();
            bytes.CopyTo(new Span<byte>(ifr, IFNAMSIZ));
            if (Libc.IoctlPtr(fd, SIOCGIFFLAGS, ifr) != 0) throw Errno.Last("SIOCGIFFLAGS", name);
            var flags = (short*)(ifr + IFNAMSIZ);
            *flags = up ? (short)(*flags | IFF_UP) : (short)(*flags & ~IFF_UP);
            if (Libc.IoctlPtr(fd, SIOCSIFFLAGS, ifr) != 0) throw Errno.Last("SIOCSIFFLAGS", name);
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    public uint? FileType(string path) => Libc.FileType(path);

    public (uint Mode, uint Major, uint Minor)? DeviceInfo(string path, bool followSymlinks = true) => Libc.DeviceInfo(path, followSymlinks);

    public void Mknod(string path, uint mode, ulong dev) => Errno.Check(Libc.Mknod(path, mode, dev), "mknod", path);

    public void Link(string existing, string newPath) => Errno.Check(Libc.Link(existing, newPath), "link", $"{newPath} -> {existing}");

    public void Rename(string oldPath, string newPath) => Errno.Check(Libc.Rename(oldPath, newPath), "rename", $"{oldPath} -> {newPath}");

    public void Chown(string path, uint uid, uint gid) => Errno.Check(Libc.Chown(path, uid, gid), "chown", path);

    public void Lchown(string path, int uid, int gid) => Errno.Check(Libc.Lchown(path, uid, gid), "lchown", path);

    public void Chmod(string path, uint mode) => Errno.Check(Libc.Chmod(path, mode & 0xFFF), "chmod", path);

    public void Lsetxattr(string path, string name, ReadOnlySpan<byte> value) => Libc.Lsetxattr(path, name, value);

    public byte[]? Lgetxattr(string path, string name) => Libc.Lgetxattr(path, name);

    public void Lutimes(string path, DateTimeOffset atime, DateTimeOffset mtime) => Libc.Lutimes(path, atime, mtime);

    public FdHandle Open(string path, int flags) => FdHandle.Open(path, flags);

    public FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo) => Libc.CloneMount(path, recursive, idmapTo);

    public void MoveMount(FdHandle tree, string target) => Libc.MoveMount(tree, target);

    public void SetMountAttributes(FdHandle tree, ulong attrs, string what) => Libc.SetMountAttributes(tree, attrs, what);

    public void ChrootTo(FdHandle dir, string what)
    {
        Errno.Check(Libc.Fchdir(dir.Fd), "fchdir", what);
        Errno.Check(Libc.Chroot("."), "chroot", what);
    }

    public int LoopGetFree()
    {
        using var control = FdHandle.Open("/dev/loop-control", Libc.O_RDWR);
        var n = Libc.IoctlInt(control.Fd, Libc.LOOP_CTL_GET_FREE, 0);
        if (n < 0) throw Errno.Last("ioctl(LOOP_CTL_GET_FREE)", "/dev/loop-control");
        return n;
    }

    public unsafe FdHandle LoopConfigure(string device, string backingFile, bool directIo)
    {
        using var backing = FdHandle.Open(backingFile, Libc.O_RDWR);
        var loop = FdHandle.Open(device, Libc.O_RDWR);
        var config = new Libc.LoopConfig
        {
            Fd = (uint)backing.Fd,
            InfoFlags = Libc.LO_FLAGS_AUTOCLEAR | (directIo ? Libc.LO_FLAGS_DIRECT_IO : 0),
        };
        if (Libc.IoctlPtr(loop.Fd, Libc.LOOP_CONFIGURE, &config) < 0)
        {
            var e = Errno.Last("ioctl(LOOP_CONFIGURE)", $"{device} <- {backingFile}");
            loop.Dispose();
            throw e;
        }
        return loop;
    }

    public unsafe void CopySparse(string source, string target, ulong size)
    {
        using var src = FdHandle.Open(source, Libc.O_RDONLY);
        using var dst = FdHandle.Open(target, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL, 0x180);
        long offset = 0;
        while (true)
        {
            var data = Libc.Lseek(src.Fd, offset, Libc.SEEK_DATA);
            if (data < 0)
            {
                if (Errno.Current == Libc.ENXIO) break; // no data past offset
                throw Errno.Last("lseek(SEEK_DATA)", source);
            }
            var hole = Libc.Lseek(src.Fd, data, Libc.SEEK_HOLE);
            if (hole < 0) throw Errno.Last("lseek(SEEK_HOLE)", source);
            long inOff = data, outOff = data;
            while (inOff < hole)
            {
                var n = Libc.CopyFileRange(src.Fd, &inOff, dst.Fd, &outOff, (nuint)(hole - inOff), 0);
                if (n < 0)
                {
                    if (Errno.Current == Errno.EINTR) continue;
                    throw Errno.Last("copy_file_range", $"{source} -> {target}");
                }
                if (n == 0) break;
            }
            offset = hole;
        }
        Errno.Check(Libc.Ftruncate(dst.Fd, (long)size), "ftruncate", target);
    }

    public unsafe FsUsage Statfs(string path)
    {
        Libc.StatFs s;
        Errno.Check(Libc.Statfs(path, &s), "statfs", path);
        var bsize = (ulong)s.Bsize;
        return new FsUsage(s.Type, s.Blocks * bsize, s.Bfree * bsize, s.Files, s.Ffree);
    }

    public unsafe ulong BtrfsSubvolumeCreate(string path)
    {
        var (parent, name) = Split(path);
        using (var dir = FdHandle.Open(parent, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC))
        {
            var args = VolArgs(name, path);
            if (Libc.IoctlPtr(dir.Fd, Libc.BTRFS_IOC_SUBVOL_CREATE, &args) < 0) throw Errno.Last("ioctl(BTRFS_IOC_SUBVOL_CREATE)", path);
        }
        return SubvolumeOf(path);
    }

    public ulong? BtrfsSubvolumeIdOf(string path)
    {
        var id = SubvolumeOf(path);
        return id != SubvolumeOf(Split(path).Parent) ? id : null;
    }

    /// <summary>BTRFS_IOC_INO_LOOKUP with tree id 0: the id of the subvolume holding the directory.</summary>
    private static unsafe ulong SubvolumeOf(string dir)
    {
        using var fd = FdHandle.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
        var lookup = new Libc.BtrfsInoLookupArgs { TreeId = 0, ObjectId = Libc.BTRFS_FIRST_FREE_OBJECTID };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_INO_LOOKUP, &lookup) < 0) throw Errno.Last("ioctl(BTRFS_IOC_INO_LOOKUP)", dir);
        return lookup.TreeId;
    }

    public unsafe void BtrfsSubvolumeDelete(string path)
    {
        var (parent, name) = Split(path);
        using var dir = FdHandle.Open(parent, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
        var args = VolArgs(name, path);
        if (Libc.IoctlPtr(dir.Fd, Libc.BTRFS_IOC_SNAP_DESTROY, &args) < 0) throw Errno.Last("ioctl(BTRFS_IOC_SNAP_DESTROY)", path);
    }

    private static (string Parent, string Name) Split(string path)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        return (Path.GetDirectoryName(full)!, Path.GetFileName(full));
    }

    private static unsafe Libc.BtrfsVolArgs VolArgs(string name, string path)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        if (bytes.Length >= 4088) throw Errno.Exception("btrfs subvolume name", path, Errno.EINVAL);
        var args = new Libc.BtrfsVolArgs();
        for (var i = 0; i < bytes.Length; i++) args.Name[i] = bytes[i];
        return args;
    }

    public unsafe bool BtrfsQuotaEnabled(string path)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        var search = new Libc.BtrfsSearchArgs
        {
            TreeId = Libc.BTRFS_QUOTA_TREE_OBJECTID, MaxObjectId = ulong.MaxValue, MaxOffset = ulong.MaxValue,
            MaxTransId = ulong.MaxValue, MaxType = 255, NrItems = 1,
        };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_TREE_SEARCH, &search) == 0) return true;
        if (Errno.Current == Errno.ENOENT) return false; // no quota tree: quotas are off
        throw Errno.Last("ioctl(BTRFS_IOC_TREE_SEARCH quota tree)", path);
    }

    public unsafe void BtrfsQuotaEnable(string path)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        var args = new Libc.BtrfsQuotaCtlArgs { Cmd = Libc.BTRFS_QUOTA_CTL_ENABLE };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_QUOTA_CTL, &args) < 0) throw Errno.Last("ioctl(BTRFS_IOC_QUOTA_CTL enable)", path);
    }

    public unsafe void BtrfsQgroupCreate(string path, ulong qgroupId, bool create)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        var args = new Libc.BtrfsQgroupCreateArgs { Create = create ? 1UL : 0, QgroupId = qgroupId };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_QGROUP_CREATE, &args) < 0)
            throw Errno.Last($"ioctl(BTRFS_IOC_QGROUP_CREATE {(create ? "create" : "remove")} {QgroupName(qgroupId)})", path);
    }

    /// <summary>A return above 0 says the accounting needs a rescan (the child was not empty); our
    /// children are new, empty subvolumes, so only a negative return is a failure.</summary>
    public unsafe void BtrfsQgroupAssign(string path, ulong child, ulong parent)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        var args = new Libc.BtrfsQgroupAssignArgs { Assign = 1, Src = child, Dst = parent };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_QGROUP_ASSIGN, &args) < 0)
            throw Errno.Last($"ioctl(BTRFS_IOC_QGROUP_ASSIGN {QgroupName(child)} to {QgroupName(parent)})", path);
    }

    public unsafe void BtrfsQgroupLimit(string path, ulong qgroupId, ulong maxReferencedBytes)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        var args = new Libc.BtrfsQgroupLimitArgs { QgroupId = qgroupId, Flags = Libc.BTRFS_QGROUP_LIMIT_MAX_RFER, MaxRfer = maxReferencedBytes };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_QGROUP_LIMIT, &args) < 0)
            throw Errno.Last($"ioctl(BTRFS_IOC_QGROUP_LIMIT {QgroupName(qgroupId)})", path);
    }

    public unsafe (ulong Referenced, ulong Exclusive)? BtrfsQgroupUsage(string path, ulong qgroupId)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        // The info item's key is (0, BTRFS_QGROUP_INFO_KEY, qgroupid).
        var search = new Libc.BtrfsSearchArgs
        {
            TreeId = Libc.BTRFS_QUOTA_TREE_OBJECTID, MinObjectId = 0, MaxObjectId = 0,
            MinType = Libc.BTRFS_QGROUP_INFO_KEY, MaxType = Libc.BTRFS_QGROUP_INFO_KEY,
            MinOffset = qgroupId, MaxOffset = qgroupId, MaxTransId = ulong.MaxValue, NrItems = 1,
        };
        if (Libc.IoctlPtr(fd.Fd, Libc.BTRFS_IOC_TREE_SEARCH, &search) < 0)
        {
            if (Errno.Current == Errno.ENOENT) return null;
            throw Errno.Last($"ioctl(BTRFS_IOC_TREE_SEARCH qgroup {QgroupName(qgroupId)})", path);
        }
        if (search.NrItems == 0) return null;
        // struct btrfs_ioctl_search_header (transid, objectid, offset, type, len: 32 bytes), then
        // struct btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl, excl_cmpr.
        var item = new ReadOnlySpan<byte>(search.Buf, 4096 - 104);
        var offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(item[16..]);
        if (offset != qgroupId) return null;
        var info = item[32..];
        return (System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(info[8..]),
                System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(info[24..]));
    }

    /// <summary>"1/256": a qgroup id as btrfs-progs writes it (level in the top 16 bits).</summary>
    public static string QgroupName(ulong id) => $"{id >> 48}/{id & 0xFFFF_FFFF_FFFF}";

    public unsafe void SetProjectId(string dir, uint projectId)
    {
        using var fd = FdHandle.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
        Libc.FsXattr x;
        if (Libc.IoctlPtr(fd.Fd, Libc.FS_IOC_FSGETXATTR, &x) < 0) throw Errno.Last("ioctl(FS_IOC_FSGETXATTR)", dir);
        x.ProjId = projectId;
        x.XFlags |= Libc.FS_XFLAG_PROJINHERIT;
        if (Libc.IoctlPtr(fd.Fd, Libc.FS_IOC_FSSETXATTR, &x) < 0) throw Errno.Last($"ioctl(FS_IOC_FSSETXATTR project {projectId})", dir);
    }

    public unsafe bool ProjectQuotaEnabled(string path)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        Libc.IfDqinfo info;
        // ESRCH: quotas of that type are off; ENOSYS/EINVAL/ENOTSUP: none on this kernel or file system.
        return Libc.QuotactlFd(fd.Fd, Libc.QCmd(Libc.Q_GETINFO, Libc.PRJQUOTA), 0, &info) == 0;
    }

    public unsafe void SetProjectLimit(string path, bool xfs, uint projectId, ulong bytes)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        int rc;
        if (xfs)
        {
            var q = new Libc.FsDiskQuota
            {
                Version = Libc.FS_DQUOT_VERSION, Flags = Libc.FS_PROJ_QUOTA, FieldMask = Libc.FS_DQ_BHARD | Libc.FS_DQ_BSOFT,
                Id = projectId, BlkHardLimit = (bytes + 511) / 512, BlkSoftLimit = (bytes + 511) / 512,
            };
            rc = Libc.QuotactlFd(fd.Fd, Libc.QCmd(Libc.Q_XSETQLIM, Libc.PRJQUOTA), projectId, &q);
        }
        else
        {
            var q = new Libc.IfDqblk { BHardLimit = (bytes + 1023) / 1024, BSoftLimit = (bytes + 1023) / 1024, Valid = Libc.QIF_BLIMITS };
            rc = Libc.QuotactlFd(fd.Fd, Libc.QCmd(Libc.Q_SETQUOTA, Libc.PRJQUOTA), projectId, &q);
        }
        if (rc < 0) throw Errno.Last($"quotactl({(xfs ? "Q_XSETQLIM" : "Q_SETQUOTA")} project {projectId})", path);
    }

    public unsafe (ulong Bytes, ulong Inodes) ProjectUsage(string path, bool xfs, uint projectId)
    {
        using var fd = FdHandle.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC);
        if (xfs)
        {
            Libc.FsDiskQuota q;
            if (Libc.QuotactlFd(fd.Fd, Libc.QCmd(Libc.Q_XGETQUOTA, Libc.PRJQUOTA), projectId, &q) < 0)
                throw Errno.Last($"quotactl(Q_XGETQUOTA project {projectId})", path);
            return (q.BCount * 512, q.ICount);
        }
        Libc.IfDqblk d;
        if (Libc.QuotactlFd(fd.Fd, Libc.QCmd(Libc.Q_GETQUOTA, Libc.PRJQUOTA), projectId, &d) < 0)
            throw Errno.Last($"quotactl(Q_GETQUOTA project {projectId})", path);
        return (d.CurSpace, d.CurInodes);
    }
}
