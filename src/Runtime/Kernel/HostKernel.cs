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
}
