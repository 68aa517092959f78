using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Kernel;

/// <summary>The real kernel: each method is one libc call, errno turned into
/// <see cref="KernelException"/> naming the call and its path.</summary>
public sealed unsafe partial class LinuxKernel : IKernel
{
    public static readonly LinuxKernel Instance = new();

    private static void Check(int rc, string op, string path)
    {
        if (rc != 0) throw KernelException.Last(op, path);
    }

    public void Mount(string? source, string target, string? fstype, ulong flags, string? data) =>
        Check(Libc.Mount(source, target, fstype, flags, data), "mount", $"{source ?? "none"} on {target} ({fstype ?? "-"}, {MountFlags.Format(flags)}{(string.IsNullOrEmpty(data) ? "" : ", " + data)})");

    public void Umount2(string target, int flags) => Check(Libc.Umount2(target, flags), "umount2", target);

    public void MountSetattr(string path, ulong attrSet, ulong attrClr, bool recursive)
    {
        const int AT_FDCWD = -100, AT_RECURSIVE = 0x8000;
        var attr = stackalloc ulong[4] { attrSet, attrClr, 0, 0 };
        Check((int)Libc.SyscallMountSetattr(Libc.SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, attr, 32),
            "mount_setattr", path);
    }

    public void PivotRoot(string newRoot, string putOld) =>
        Check((int)Libc.SyscallPivotRoot(Libc.SYS_pivot_root, newRoot, putOld), "pivot_root", $"{newRoot} {putOld}");

    public void Chdir(string path) => Check(Libc.Chdir(path), "chdir", path);
    public void Chroot(string path) => Check(Libc.Chroot(path), "chroot", path);

    public void Mkdir(string path, uint mode)
    {
        if (Libc.Mkdir(path, mode) != 0 && Marshal.GetLastPInvokeError() != Errno.EEXIST)
            throw KernelException.Last("mkdir", path);
    }

    public void CreateFile(string path, uint mode)
    {
        var fd = Libc.Open(path, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_CLOEXEC | Libc.O_NOCTTY, mode);
        if (fd < 0) throw KernelException.Last("open(O_CREAT)", path);
        Libc.Close(fd);
    }

    public void Mknod(string path, uint mode, ulong dev) => Check(Libc.Mknod(path, mode, dev), "mknod", path);
    public void Symlink(string target, string linkPath) => Check(Libc.Symlink(target, linkPath), "symlink", $"{linkPath} -> {target}");
    public void Chown(string path, uint uid, uint gid) => Check(Libc.Chown(path, uid, gid), "chown", path);

    public string? ReadLink(string path)
    {
        var buffer = stackalloc byte[4096];
        var n = Libc.ReadLink(path, buffer, 4096);
        if (n >= 0) return Encoding.UTF8.GetString(buffer, (int)n);
        var errno = Marshal.GetLastPInvokeError();
        if (errno is Errno.EINVAL or Errno.ENOENT or Errno.ENOTDIR) return null;
        throw new KernelException("readlink", path, errno);
    }

    public FileKind Stat(string path)
    {
        const int AT_FDCWD = -100;
        const uint STATX_TYPE = 1;
        var buffer = stackalloc byte[256];
        if (Libc.Statx(AT_FDCWD, path, 0, STATX_TYPE, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.ENOENT or Errno.ENOTDIR) return FileKind.Missing;
            throw new KernelException("statx", path, errno);
        }
        return (*(ushort*)(buffer + 28) & 0xF000) switch
        {
            0x4000 => FileKind.Directory,
            0x8000 => FileKind.File,
            _ => FileKind.Other,
        };
    }

    public void WriteFile(string path, string content)
    {
        using var fd = Open(path, Libc.O_WRONLY, 0);
        var bytes = Encoding.UTF8.GetBytes(content);
        fixed (byte* p = bytes)
        {
            if (Libc.Write(fd.Fd, p, bytes.Length) != bytes.Length) throw KernelException.Last("write", path);
        }
    }

    public FdHandle Open(string path, int flags, uint mode)
    {
        int fd;
        do { fd = Libc.Open(path, flags | Libc.O_CLOEXEC, mode); }
        while (fd < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        if (fd < 0) throw KernelException.Last("open", path);
        return new FdHandle(fd);
    }

    public void SetHostname(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = bytes) Check(Libc.Sethostname(p, (nuint)bytes.Length), "sethostname", name);
    }

    public void SetDomainname(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = bytes) Check(Libc.Setdomainname(p, (nuint)bytes.Length), "setdomainname", name);
    }

    public void SetNs(string path, int nsType)
    {
        using var fd = Open(path, Libc.O_RDONLY, 0);
        Check(Libc.Setns(fd.Fd, nsType), "setns", path);
    }

    public void Unshare(int flags) => Check(Libc.Unshare(flags), "unshare", $"0x{flags:x}");

    public void Prctl(int option, ulong arg2, ulong arg3 = 0, ulong arg4 = 0, ulong arg5 = 0) =>
        Check(Libc.Prctl(option, (nuint)arg2, (nuint)arg3, (nuint)arg4, (nuint)arg5) < 0 ? -1 : 0, "prctl", $"option {option} arg {arg2}");

    public void Capset(ulong effective, ulong permitted, ulong inheritable)
    {
        var header = new Libc.CapHeader { Version = Libc.LINUX_CAPABILITY_VERSION_3, Pid = 0 };
        var data = stackalloc Libc.CapData[2];
        data[0] = new Libc.CapData { Effective = (uint)effective, Permitted = (uint)permitted, Inheritable = (uint)inheritable };
        data[1] = new Libc.CapData { Effective = (uint)(effective >> 32), Permitted = (uint)(permitted >> 32), Inheritable = (uint)(inheritable >> 32) };
        Check(Libc.Capset(&header, data), "capset", $"eff=0x{effective:x} prm=0x{permitted:x} inh=0x{inheritable:x}");
    }

    public void SetGroups(IReadOnlyList<uint> gids)
    {
        var arr = gids.ToArray();
        fixed (uint* p = arr) Check(Libc.SetGroups((nuint)arr.Length, p), "setgroups", string.Join(',', arr));
    }

    // glibc applies setresuid/setresgid/setgroups to every thread of the process (the "setxid"
    // broadcast), so the runtime's helper threads cannot keep root behind the exec'ing thread.
    public void SetResGid(uint gid) => Check(Libc.SetResGid(gid, gid, gid), "setresgid", gid.ToString());
    public void SetResUid(uint uid) => Check(Libc.SetResUid(uid, uid, uid), "setresuid", uid.ToString());

    public void SetRlimit(int resource, ulong soft, ulong hard)
    {
        var lim = stackalloc ulong[2] { soft, hard };
        Check(Libc.SetRlimit(resource, lim), "setrlimit", $"resource {resource} soft {soft} hard {hard}");
    }

    public void Umask(uint mask) => Libc.Umask(mask);
}

public static class MountFlags
{
    private static readonly (ulong Flag, string Name)[] Names =
    [
        (Abi.MS_RDONLY, "ro"), (Abi.MS_NOSUID, "nosuid"), (Abi.MS_NODEV, "nodev"), (Abi.MS_NOEXEC, "noexec"),
        (Abi.MS_SYNCHRONOUS, "sync"), (Abi.MS_REMOUNT, "remount"), (Abi.MS_MANDLOCK, "mand"),
        (Abi.MS_DIRSYNC, "dirsync"), (Abi.MS_NOSYMFOLLOW, "nosymfollow"), (Abi.MS_NOATIME, "noatime"),
        (Abi.MS_NODIRATIME, "nodiratime"), (Abi.MS_BIND, "bind"), (Abi.MS_MOVE, "move"), (Abi.MS_REC, "rec"),
        (Abi.MS_UNBINDABLE, "unbindable"), (Abi.MS_PRIVATE, "private"), (Abi.MS_SLAVE, "slave"),
        (Abi.MS_SHARED, "shared"), (Abi.MS_RELATIME, "relatime"), (Abi.MS_STRICTATIME, "strictatime"),
    ];

    /// <summary>"bind|rec|ro": readable flags for plans, logs and test assertions.</summary>
    public static string Format(ulong flags)
    {
        if (flags == 0) return "0";
        var parts = new List<string>();
        foreach (var (flag, name) in Names)
            if ((flags & flag) != 0) { parts.Add(name); flags &= ~flag; }
        if (flags != 0) parts.Add($"0x{flags:x}");
        return string.Join('|', parts);
    }
}
