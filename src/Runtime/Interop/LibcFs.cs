using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>File-system calls layer extraction needs and .NET does not offer: owners and times
/// without following symlinks, device nodes (overlay whiteouts), xattrs, hard links. All take
/// paths the caller has already checked stay inside the target tree.</summary>
internal static partial class Libc
{
    public const uint S_IFCHR = 0x2000, S_IFIFO = 0x1000, S_IFLNK = 0xA000;
    private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;

    [LibraryImport("libc", EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MknodRaw(string path, uint mode, ulong dev);

    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LchownRaw(string path, int uid, int gid);

    [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ChmodRaw(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LinkRaw(string oldPath, string newPath);

    [LibraryImport("libc", EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int LsetxattrRaw(string path, string name, byte* value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint LgetxattrRaw(string path, string name, byte* value, nuint size);

    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int UtimensatRaw(int dirfd, string path, Timespec* times, int flags);

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec { public long Sec; public long Nsec; }

    /// <summary>A 0:0 character device: overlayfs' whiteout.</summary>
    public static void MknodWhiteout(string path) => Check(MknodRaw(path, S_IFCHR, 0), "mknod", path);

    public static void Mkfifo(string path, uint perm) => Check(MknodRaw(path, S_IFIFO | (perm & 0xFFF), 0), "mknod fifo", path);

    public static void Lchown(string path, int uid, int gid) => Check(LchownRaw(path, uid, gid), "lchown", path);

    /// <summary>Permission bits including setuid/setgid/sticky (File.SetUnixFileMode keeps those too,
    /// but follows symlinks silently; callers here never pass a symlink).</summary>
    public static void Chmod(string path, uint mode) => Check(ChmodRaw(path, mode & 0xFFF), "chmod", path);

    public static void Link(string existing, string newPath) => Check(LinkRaw(existing, newPath), "link", $"{newPath} -> {existing}");

    public static unsafe void Lsetxattr(string path, string name, ReadOnlySpan<byte> value)
    {
        fixed (byte* p = value)
            Check(LsetxattrRaw(path, name, p, (nuint)value.Length, 0), $"lsetxattr {name}", path);
    }

    /// <summary>An xattr's value, or null when the file does not have it.</summary>
    public static unsafe byte[]? Lgetxattr(string path, string name)
    {
        var buffer = new byte[4096];
        fixed (byte* p = buffer)
        {
            var n = LgetxattrRaw(path, name, p, (nuint)buffer.Length);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == 61) return null; // ENODATA
                throw Errno.Exception($"lgetxattr {name}", path, errno);
            }
            return buffer[..(int)n];
        }
    }

    /// <summary>Sets atime and mtime of the path itself, never a symlink's target.</summary>
    public static unsafe void Lutimes(string path, DateTimeOffset atime, DateTimeOffset mtime)
    {
        var times = stackalloc Timespec[2];
        times[0] = ToTimespec(atime);
        times[1] = ToTimespec(mtime);
        Check(UtimensatRaw(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), "utimensat", path);
    }

    private static Timespec ToTimespec(DateTimeOffset t)
    {
        var ticks = t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
        var sec = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out var rem);
        if (rem < 0) { sec--; rem += TimeSpan.TicksPerSecond; }
        return new Timespec { Sec = sec, Nsec = rem * 100 };
    }

    private static void Check(int rc, string op, string path)
    {
        if (rc != 0) throw Errno.Last(op, path);
    }
}
