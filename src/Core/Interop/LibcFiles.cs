using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>Calls on paths that .NET does not offer: owners and times without following symlinks,
/// device nodes (overlay whiteouts), xattrs, hard links, statx.</summary>
internal static unsafe partial class Libc
{
    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000, AT_RECURSIVE = 0x8000;
    public const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000, S_IFBLK = 0x6000,
        S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFIFO = 0x1000;

    /// <summary>dev_t from a major and minor number (glibc's encoding).</summary>
    public static ulong Makedev(ulong major, ulong minor) =>
        ((major & 0xfffff000UL) << 32) | ((major & 0xfffUL) << 8) | ((minor & 0xffffff00UL) << 12) | (minor & 0xffUL);
    public const uint STATX_TYPE = 1, STATX_MODE = 2, STATX_UID = 8;

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Access(string path, int mode);
    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mkdir(string path, uint mode);
    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Rename(string oldPath, string newPath);
    [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Rmdir(string path);
    [LibraryImport("libc", EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mknod(string path, uint mode, ulong dev);
    [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chmod(string path, uint mode);
    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chown(string path, uint uid, uint gid);
    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Lchown(string path, int uid, int gid);
    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Link(string oldPath, string newPath);
    [LibraryImport("libc", EntryPoint = "symlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Symlink(string target, string linkpath);
    [LibraryImport("libc", EntryPoint = "readlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint ReadLink(string path, byte* buf, nint size);
    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);
    [LibraryImport("libc", EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Lsetxattr(string path, string name, byte* value, nuint size, int flags);
    [LibraryImport("libc", EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint Lgetxattr(string path, string name, byte* value, nuint size);
    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Utimensat(int dirfd, string path, Timespec* times, int flags);
    [LibraryImport("libc", EntryPoint = "chdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chdir(string path);
    [LibraryImport("libc", EntryPoint = "fchdir", SetLastError = true)]
    public static partial int Fchdir(int fd);
    [LibraryImport("libc", EntryPoint = "chroot", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chroot(string path);
    [LibraryImport("libc", EntryPoint = "umask")]
    public static partial uint Umask(uint mask);

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec { public long Sec; public long Nsec; }

    /// <summary>Mode (type and permission bits) and device number of a path, or null when it does
    /// not exist. statx's layout is the same on every architecture, unlike struct stat.</summary>
    public static (uint Mode, uint Major, uint Minor)? StatMode(string path, bool followSymlinks)
    {
        var buffer = stackalloc byte[256];
        if (Statx(AT_FDCWD, path, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE, buffer) != 0)
        {
            var errno = Errno.Current;
            if (errno == Errno.ENOENT) return null;
            throw Errno.Exception("statx", path, errno);
        }
        // struct statx: stx_mode at 28, stx_rdev_major/minor at 128/132.
        return (*(ushort*)(buffer + 28), *(uint*)(buffer + 128), *(uint*)(buffer + 132));
    }

    /// <summary>Mode and owner of a path, not following a final symlink, or null when it does not exist.</summary>
    public static (uint Mode, uint Uid)? StatOwner(string path)
    {
        var buffer = stackalloc byte[256];
        if (Statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID, buffer) != 0)
        {
            var errno = Errno.Current;
            if (errno == Errno.ENOENT) return null;
            throw Errno.Exception("statx", path, errno);
        }
        // struct statx: stx_uid at 20, stx_mode at 28.
        return (*(ushort*)(buffer + 28), *(uint*)(buffer + 20));
    }

    /// <summary>The file type bits (S_IFMT) of a path, not following a final symlink, or null when
    /// it does not exist.</summary>
    public static uint? FileType(string path) => StatMode(path, followSymlinks: false) is { } s ? s.Mode & S_IFMT : null;

    /// <summary>Mode and device number of a path, following symlinks (/dev/disk/by-id/... are
    /// links) unless told not to, or null when it does not exist.</summary>
    public static (uint Mode, uint Major, uint Minor)? DeviceInfo(string path, bool followSymlinks = true) => StatMode(path, followSymlinks);

    /// <summary>The device number of the file system holding a path (st_dev: a block device's
    /// for disk file systems, an anonymous one with major 0 for overlay, tmpfs, btrfs subvolumes),
    /// or null when the path does not exist.</summary>
    public static (uint Major, uint Minor)? FileSystemDevice(string path)
    {
        var buffer = stackalloc byte[256];
        if (Statx(AT_FDCWD, path, 0, STATX_TYPE, buffer) != 0)
        {
            var errno = Errno.Current;
            if (errno == Errno.ENOENT) return null;
            throw Errno.Exception("statx", path, errno);
        }
        // struct statx: stx_dev_major/minor at 136/140.
        return (*(uint*)(buffer + 136), *(uint*)(buffer + 140));
    }

    public static void Lsetxattr(string path, string name, ReadOnlySpan<byte> value)
    {
        fixed (byte* p = value)
            Errno.Check(Lsetxattr(path, name, p, (nuint)value.Length, 0), $"lsetxattr {name}", path);
    }

    /// <summary>An xattr's value, or null when the file does not have it.</summary>
    public static byte[]? Lgetxattr(string path, string name)
    {
        var buffer = new byte[4096];
        fixed (byte* p = buffer)
        {
            var n = Lgetxattr(path, name, p, (nuint)buffer.Length);
            if (n < 0)
            {
                var errno = Errno.Current;
                if (errno == Errno.ENODATA) return null;
                throw Errno.Exception($"lgetxattr {name}", path, errno);
            }
            return buffer[..(int)n];
        }
    }

    /// <summary>Sets atime and mtime of the path itself, never a symlink's target.</summary>
    public static void Lutimes(string path, DateTimeOffset atime, DateTimeOffset mtime)
    {
        var times = stackalloc Timespec[2];
        times[0] = ToTimespec(atime);
        times[1] = ToTimespec(mtime);
        Errno.Check(Utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), "utimensat", path);
    }

    private static Timespec ToTimespec(DateTimeOffset t)
    {
        var ticks = t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
        var sec = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out var rem);
        if (rem < 0) { sec--; rem += TimeSpan.TicksPerSecond; }
        return new Timespec { Sec = sec, Nsec = rem * 100 };
    }
}
