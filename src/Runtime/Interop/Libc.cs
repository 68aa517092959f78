using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>The few libc calls the daemon needs that .NET does not expose. Each failure becomes
/// an exception naming the operation, the path and errno (see <see cref="Errno"/>).</summary>
internal static partial class Libc
{
    public const int O_RDONLY = 0;
    public const int O_DIRECTORY = 0x10000;
    public const int O_CLOEXEC = 0x80000;
    public const int O_CREAT = 0x40;
    public const int O_RDWR = 2;
    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int cmd, int arg);

    /// <summary>fcntl(F_DUPFD_CLOEXEC): a second descriptor for the same open file.</summary>
    public static int DupCloexec(int fd, string what)
    {
        const int F_DUPFD_CLOEXEC = 1030;
        var dup = Fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0) throw Errno.Last("fcntl(F_DUPFD_CLOEXEC)", what);
        return dup;
    }

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    public const int CLONE_NEWUTS = 0x04000000, CLONE_NEWIPC = 0x08000000, CLONE_NEWNET = 0x40000000, CLONE_NEWPID = 0x20000000;
    public const ulong MS_BIND = 4096;
    public const int MNT_DETACH = 2;

    [LibraryImport("libc", EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nstype);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string? source, string target, string? fstype, ulong flags, string? data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "sethostname", SetLastError = true)]
    public static partial int Sethostname(byte[] name, nint len);

    [LibraryImport("libc", EntryPoint = "gettid")]
    public static partial int Gettid();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    public const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFDIR = 0x4000, S_IFREG = 0x8000;

    /// <summary>The file type bits (S_IFMT) of a path, not following a final symlink, or null when
    /// it does not exist. statx's layout is the same on every architecture, unlike struct stat.</summary>
    public static unsafe uint? FileType(string path)
    {
        const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;
        const uint STATX_TYPE = 1;
        var buffer = stackalloc byte[256];
        if (Statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 2) return null; // ENOENT
            throw Errno.Exception("statx", path, errno);
        }
        return *(ushort*)(buffer + 28) & S_IFMT;
    }


    /// <summary>Mode (type and permission bits) and device number of a path, following symlinks
    /// (/dev/disk/by-id/... are links), or null when it does not exist.</summary>
    public static unsafe (uint Mode, uint Major, uint Minor)? DeviceInfo(string path, bool followSymlinks = true)
    {
        const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;
        const uint STATX_TYPE = 1, STATX_MODE = 2;
        var buffer = stackalloc byte[256];
        if (Statx(AT_FDCWD, path, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 2) return null;
            throw Errno.Exception("statx", path, errno);
        }
        // struct statx: stx_mode at 28, stx_rdev_major/minor at 128/132.
        return (*(ushort*)(buffer + 28), *(uint*)(buffer + 128), *(uint*)(buffer + 132));
    }
}

/// <summary>errno to exception, in one place.</summary>
internal static class Errno
{
    public const int EWOULDBLOCK = 11;
    public const int EINTR = 4;

    public static IOException Exception(string operation, string path, int errno) =>
        new($"{operation} {path}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})") { HResult = errno };

    public static IOException Last(string operation, string path) => Exception(operation, path, Marshal.GetLastPInvokeError());
}

/// <summary>A file descriptor that closes itself. fd 0 is a valid descriptor; -1 is invalid.</summary>
internal sealed class FdHandle : SafeHandle
{
    public FdHandle(int fd) : base(new IntPtr(-1), ownsHandle: true) => SetHandle(new IntPtr(fd));
    public override bool IsInvalid => handle.ToInt64() < 0;
    public int Fd => (int)handle.ToInt64();
    protected override bool ReleaseHandle() => Libc.Close(Fd) == 0;

    public static FdHandle Open(string path, int flags, uint mode = 0)
    {
        int fd;
        do { fd = Libc.Open(path, flags | Libc.O_CLOEXEC, mode); }
        while (fd < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        if (fd < 0) throw Errno.Last("open", path);
        return new FdHandle(fd);
    }
}
