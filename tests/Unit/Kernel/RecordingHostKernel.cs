using System.Text;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Tests.Unit.Kernel;

/// <summary>A fake host kernel: records each call that would change the host as one readable line
/// ("mount overlay /t overlay 0x0 lowerdir=...") and changes nothing. Questions about files
/// (<see cref="FileType"/>, <see cref="DeviceInfo"/>, <see cref="Lgetxattr"/>) are answered from
/// <see cref="Types"/>, <see cref="Devices"/> and recorded xattrs first, then from the real file
/// system (a temporary directory the test made, readable without root). <see cref="Failures"/>
/// makes chosen calls fail with an errno.</summary>
public sealed class RecordingHostKernel : IHostKernel
{
    public List<string> Calls { get; } = [];
    /// <summary>Call prefix ("mount overlay") → errno to throw.</summary>
    public Dictionary<string, int> Failures { get; } = [];
    public Dictionary<string, uint?> Types { get; } = [];
    public Dictionary<string, (uint Mode, uint Major, uint Minor)?> Devices { get; } = [];
    private readonly Dictionary<(string, string), byte[]> _xattrs = [];

    private void Record(string op, string path, string line)
    {
        lock (Calls)
        {
            foreach (var (prefix, errno) in Failures)
                if (line.StartsWith(prefix, StringComparison.Ordinal)) throw new KernelException(op, path, errno);
            Calls.Add(line);
        }
    }

    public void Mount(string? source, string target, string? fstype, ulong flags, string? data) =>
        Record("mount", target, $"mount {source ?? "none"} {target} {fstype ?? "-"} 0x{flags:x}{(string.IsNullOrEmpty(data) ? "" : " " + data)}");
    public void Umount2(string target, int flags) => Record("umount", target, $"umount2 {target} {flags}");
    public void Unshare(int flags) => Record("unshare", "", $"unshare 0x{flags:x}");
    public void Setns(string path, int nstype) => Record("setns", path, $"setns {path} 0x{nstype:x}");
    public int Gettid() => 4242;
    public void Sethostname(string hostname) => Record("sethostname", hostname, $"sethostname {hostname}");
    public void SetLinkUp(string name, bool up) => Record("SIOCSIFFLAGS", name, $"link {name} {(up ? "up" : "down")}");

    public uint? FileType(string path) => Types.TryGetValue(path, out var t) ? t : Libc.FileType(path);
    public (uint Mode, uint Major, uint Minor)? DeviceInfo(string path, bool followSymlinks = true) =>
        Devices.TryGetValue(path, out var d) ? d : Libc.DeviceInfo(path, followSymlinks);

    public void Mknod(string path, uint mode, ulong dev) => Record("mknod", path, $"mknod {path} {Convert.ToString(mode, 8)} {dev}");
    public void Link(string existing, string newPath) => Record("link", newPath, $"link {newPath} -> {existing}");
    /// <summary>Recorded, then done when the file exists (the callers' files are real temp files).</summary>
    public void Rename(string oldPath, string newPath)
    {
        Record("rename", oldPath, $"rename {oldPath} {newPath}");
        if (File.Exists(oldPath)) File.Move(oldPath, newPath);
    }
    public void Chown(string path, uint uid, uint gid) => Record("chown", path, $"chown {path} {uid}:{gid}");
    public void Lchown(string path, int uid, int gid) => Record("lchown", path, $"lchown {path} {uid}:{gid}");
    public void Chmod(string path, uint mode) => Record("chmod", path, $"chmod {path} {Convert.ToString(mode & 0xFFF, 8)}");

    public void Lsetxattr(string path, string name, ReadOnlySpan<byte> value)
    {
        Record("lsetxattr", path, $"lsetxattr {path} {name}={Encoding.UTF8.GetString(value)}");
        _xattrs[(path, name)] = value.ToArray();
    }

    public byte[]? Lgetxattr(string path, string name) => _xattrs.GetValueOrDefault((path, name));
    public void Lutimes(string path, DateTimeOffset atime, DateTimeOffset mtime) =>
        Record("utimensat", path, $"utimensat {path} {mtime.ToUnixTimeSeconds()}");

    public FdHandle Open(string path, int flags)
    {
        Record("open", path, $"open {path}");
        return new FdHandle(-1);
    }

    public FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo)
    {
        Record("open_tree", path, $"open_tree {path} clone{(recursive ? "|recursive" : "")}{(idmapTo is not null ? "; mount_setattr idmap" : "")}");
        return new FdHandle(-1);
    }

    public void MoveMount(FdHandle tree, string target) => Record("move_mount", target, $"move_mount tree {target}");
    public void SetMountAttributes(FdHandle tree, ulong attrs, string what) => Record("mount_setattr", what, $"mount_setattr {what} 0x{attrs:x}");
    public void ChrootTo(FdHandle dir, string what) => Record("chroot", what, $"chroot {what}");

    /// <summary>The loop device LoopGetFree hands out; statfs answers from <see cref="FileSystems"/>.</summary>
    public int FreeLoop { get; set; } = 7;
    public Dictionary<string, FsUsage> FileSystems { get; } = [];

    public int LoopGetFree()
    {
        Record("ioctl", "/dev/loop-control", "ioctl /dev/loop-control LOOP_CTL_GET_FREE");
        return FreeLoop;
    }

    public FdHandle LoopConfigure(string device, string backingFile, bool directIo)
    {
        Record("ioctl", device, $"ioctl {device} LOOP_CONFIGURE {backingFile} autoclear{(directIo ? "|direct_io" : "")}");
        return new FdHandle(-1);
    }

    /// <summary>Recorded; the target is made (empty) when its directory exists, as the copy would.</summary>
    public void CopySparse(string source, string target, ulong size)
    {
        Record("copy", target, $"copy_sparse {source} {target} {size}");
        if (Directory.Exists(Path.GetDirectoryName(target))) File.WriteAllText(target, "");
    }

    public FsUsage Statfs(string path) => FileSystems.TryGetValue(path, out var u) ? u : throw new KernelException("statfs", path, Errno.ENOENT);

    /// <summary>The id the next subvolume gets (btrfs starts at 256); made as a plain directory.</summary>
    public ulong NextSubvolume { get; set; } = 256;
    public bool BtrfsQuotas { get; set; }
    /// <summary>Qgroup id → (referenced, exclusive) bytes, as BtrfsQgroupUsage answers.</summary>
    public Dictionary<ulong, (ulong, ulong)> Qgroups { get; } = [];

    public ulong BtrfsSubvolumeCreate(string path)
    {
        Record("ioctl", path, $"ioctl BTRFS_IOC_SUBVOL_CREATE {path}");
        Directory.CreateDirectory(path);
        Subvolumes[path] = NextSubvolume;
        return NextSubvolume++;
    }

    /// <summary>Path → id of the subvolumes made (or declared by the test).</summary>
    public Dictionary<string, ulong> Subvolumes { get; } = [];
    public ulong? BtrfsSubvolumeIdOf(string path) => Subvolumes.TryGetValue(path, out var id) ? id : null;

    public void BtrfsSubvolumeDelete(string path)
    {
        Record("ioctl", path, $"ioctl BTRFS_IOC_SNAP_DESTROY {path}");
        if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        else throw new KernelException("ioctl(BTRFS_IOC_SNAP_DESTROY)", path, Errno.ENOENT);
    }

    public bool BtrfsQuotaEnabled(string path) => BtrfsQuotas;

    public void BtrfsQuotaEnable(string path)
    {
        Record("ioctl", path, $"ioctl BTRFS_IOC_QUOTA_CTL enable {path}");
        BtrfsQuotas = true;
    }

    public void BtrfsQgroupCreate(string path, ulong qgroupId, bool create) =>
        Record("ioctl", path, $"ioctl BTRFS_IOC_QGROUP_CREATE {(create ? "create" : "remove")} {HostKernel.QgroupName(qgroupId)}");
    public void BtrfsQgroupAssign(string path, ulong child, ulong parent) =>
        Record("ioctl", path, $"ioctl BTRFS_IOC_QGROUP_ASSIGN {HostKernel.QgroupName(child)} {HostKernel.QgroupName(parent)}");
    public void BtrfsQgroupLimit(string path, ulong qgroupId, ulong maxReferencedBytes) =>
        Record("ioctl", path, $"ioctl BTRFS_IOC_QGROUP_LIMIT {HostKernel.QgroupName(qgroupId)} max_rfer={maxReferencedBytes}");
    public (ulong Referenced, ulong Exclusive)? BtrfsQgroupUsage(string path, ulong qgroupId) =>
        Qgroups.TryGetValue(qgroupId, out var u) ? u : null;

    public bool ProjectQuotas { get; set; }
    /// <summary>Project id → (bytes, inodes), as ProjectUsage answers.</summary>
    public Dictionary<uint, (ulong, ulong)> Projects { get; } = [];

    public void SetProjectId(string dir, uint projectId) => Record("ioctl", dir, $"ioctl FS_IOC_FSSETXATTR {dir} projid={projectId} projinherit");
    public bool ProjectQuotaEnabled(string path) => ProjectQuotas;
    public void SetProjectLimit(string path, bool xfs, uint projectId, ulong bytes) =>
        Record("quotactl", path, $"quotactl {(xfs ? "Q_XSETQLIM" : "Q_SETQUOTA")} project {projectId} {bytes}");
    public (ulong Bytes, ulong Inodes) ProjectUsage(string path, bool xfs, uint projectId) =>
        Projects.TryGetValue(projectId, out var u) ? u : (0, 0);
}
