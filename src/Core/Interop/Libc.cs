using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>The one set of libc entry points, shared by the daemon, the shim and the cgroup code:
/// each function is declared once, returns what libc returns and keeps errno
/// (<c>SetLastError</c>), so callers turn a failure into a <see cref="KernelException"/> with
/// <see cref="Errno"/>. The library name stays "libc": the NativeAOT shim binds these directly at
/// load (<c>DirectPInvoke</c> in src/Shim/Shim.csproj). This file: descriptors and plain I/O;
/// LibcFiles.cs: paths; LibcMount.cs: mounts and namespaces; LibcProcess.cs: processes and
/// credentials; LibcSockets.cs: sockets.</summary>
internal static unsafe partial class Libc
{
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_APPEND = 0x400, O_NONBLOCK = 0x800, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000,
        O_CLOEXEC = 0x80000, O_PATH = 0x200000;
    public const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, FD_CLOEXEC = 1, F_DUPFD_CLOEXEC = 1030, F_SETPIPE_SZ = 1031;
    public const int LOCK_EX = 2, LOCK_NB = 4;
    public const short POLLIN = 1, POLLPRI = 2, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd { public int Fd; public short Events; public short Revents; }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, uint mode);
    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);
    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buf, nint count);
    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buf, nint count);
    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);
    public const uint SYNC_FILE_RANGE_WRITE = 2;
    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    public static partial int SyncFileRange(int fd, long offset, long nbytes, uint flags);
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);
    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    public static partial int Dup2(int oldfd, int newfd);
    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlInt(int fd, ulong request, int arg);
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlPtr(int fd, ulong request, void* arg);
    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);
    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);
    [LibraryImport("libc", EntryPoint = "inotify_init1", SetLastError = true)]
    public static partial int InotifyInit1(int flags);
    [LibraryImport("libc", EntryPoint = "inotify_add_watch", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int InotifyAddWatch(int fd, string path, uint mask);
    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);
    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    public static partial int MallocTrim(nuint pad);

    /// <summary>Writes all of <paramref name="data"/>, retrying on EINTR and short writes.</summary>
    public static void WriteAll(int fd, ReadOnlySpan<byte> data, string what)
    {
        fixed (byte* p = data)
        {
            var off = 0;
            while (off < data.Length)
            {
                var n = Write(fd, p + off, data.Length - off);
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                    throw Errno.Last("write", what);
                }
                off += (int)n;
            }
        }
    }

    /// <summary>read(2) retrying on EINTR; 0 is end of file.</summary>
    public static int ReadSome(int fd, Span<byte> buffer, string what)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = Read(fd, p, buffer.Length);
                if (n >= 0) return (int)n;
                if (Marshal.GetLastPInvokeError() != Errno.EINTR) throw Errno.Last("read", what);
            }
        }
    }

    public static void SetCloexec(int fd, bool on)
    {
        if (Fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0) < 0) throw Errno.Last("fcntl(F_SETFD)", $"fd {fd}");
    }

    /// <summary>fcntl(F_DUPFD_CLOEXEC): a second descriptor for the same open file.</summary>
    public static int DupCloexec(int fd, string what)
    {
        var dup = Fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0) throw Errno.Last("fcntl(F_DUPFD_CLOEXEC)", what);
        return dup;
    }

    /// <summary>dup2(2) retrying on EINTR: <paramref name="newFd"/> becomes a copy of <paramref name="oldFd"/>.</summary>
    public static void Dup2(int oldFd, int newFd, string what)
    {
        while (Dup2(oldFd, newFd) < 0)
            if (Marshal.GetLastPInvokeError() != Errno.EINTR) throw Errno.Last("dup2", what);
    }
}
