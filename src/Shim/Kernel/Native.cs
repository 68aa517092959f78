using System.Runtime.InteropServices;

namespace CriRuntime.Shim.Kernel;

/// <summary>Raw libc entry points. Only <see cref="LinuxKernel"/> and the process plumbing
/// (spawn, wait, pipes) call these; everything that changes the container goes through
/// <see cref="IKernel"/> so tests can record it.</summary>
internal static unsafe partial class Native
{
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_APPEND = 0x400, O_NONBLOCK = 0x800, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000,
        O_CLOEXEC = 0x80000, O_PATH = 0x200000;
    public const int F_GETFD = 1, F_SETFD = 2, FD_CLOEXEC = 1;

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
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);
    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    public static partial int Dup2(int oldfd, int newfd);
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlInt(int fd, ulong request, int arg);
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int IoctlPtr(int fd, ulong request, void* arg);
    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);
    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    public static partial int SocketPair(int domain, int type, int protocol, int* fds);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string? source, string target, string? fstype, ulong flags, string? data);
    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallPivotRoot(long number, string newRoot, string putOld);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallMountSetattr(long number, int dirfd, string path, int flags, ulong* attr, nuint size);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall2(long number, long a, long b);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall4(long number, long a, long b, long c, long d);
    [LibraryImport("libc", EntryPoint = "chdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chdir(string path);
    [LibraryImport("libc", EntryPoint = "chroot", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chroot(string path);
    [LibraryImport("libc", EntryPoint = "sethostname", SetLastError = true)]
    public static partial int SetHostname(byte* name, nuint len);
    [LibraryImport("libc", EntryPoint = "setdomainname", SetLastError = true)]
    public static partial int SetDomainname(byte* name, nuint len);
    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    public static partial int SetNs(int fd, int nstype);
    [LibraryImport("libc", EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);
    [LibraryImport("libc", EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mknod(string path, uint mode, ulong dev);
    [LibraryImport("libc", EntryPoint = "symlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Symlink(string target, string linkpath);
    [LibraryImport("libc", EntryPoint = "readlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint ReadLink(string path, byte* buf, nint size);
    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mkdir(string path, uint mode);
    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chown(string path, uint uid, uint gid);
    [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chmod(string path, uint mode);
    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);
    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    public static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);
    [LibraryImport("libc", EntryPoint = "capset", SetLastError = true)]
    public static partial int Capset(CapHeader* header, CapData* data);
    [LibraryImport("libc", EntryPoint = "capget", SetLastError = true)]
    public static partial int Capget(CapHeader* header, CapData* data);
    [LibraryImport("libc", EntryPoint = "setresuid", SetLastError = true)]
    public static partial int SetResUid(uint r, uint e, uint s);
    [LibraryImport("libc", EntryPoint = "setresgid", SetLastError = true)]
    public static partial int SetResGid(uint r, uint e, uint s);
    [LibraryImport("libc", EntryPoint = "setgroups", SetLastError = true)]
    public static partial int SetGroups(nuint size, uint* list);
    [LibraryImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    public static partial int SetRlimit(int resource, ulong* rlim);
    [LibraryImport("libc", EntryPoint = "umask")]
    public static partial uint Umask(uint mask);
    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true)]
    public static partial int Execve(byte* path, byte** argv, byte** envp);
    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    public static partial int Setsid();
    [LibraryImport("libc", EntryPoint = "getppid")]
    public static partial int Getppid();
    [LibraryImport("libc", EntryPoint = "getpid")]
    public static partial int Getpid();
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int sig);
    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    public static partial int Waitpid(int pid, int* status, int options);
    [LibraryImport("libc", EntryPoint = "posix_spawn", SetLastError = true)]
    public static partial int PosixSpawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    public static partial int FileActionsInit(void* fa);
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    public static partial int FileActionsDestroy(void* fa);
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    public static partial int FileActionsAddDup2(void* fa, int fd, int newfd);
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addopen", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int FileActionsAddOpen(void* fa, int fd, string path, int flags, uint mode);
    [LibraryImport("libc", EntryPoint = "posix_spawnattr_init")]
    public static partial int SpawnAttrInit(void* attr);
    [LibraryImport("libc", EntryPoint = "posix_spawnattr_destroy")]
    public static partial int SpawnAttrDestroy(void* attr);
    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setflags")]
    public static partial int SpawnAttrSetFlags(void* attr, short flags);
    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigmask")]
    public static partial int SpawnAttrSetSigMask(void* attr, void* sigset);
    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigdefault")]
    public static partial int SpawnAttrSetSigDefault(void* attr, void* sigset);
    [LibraryImport("libc", EntryPoint = "sigemptyset")]
    public static partial int SigEmptySet(void* set);
    [LibraryImport("libc", EntryPoint = "sigfillset")]
    public static partial int SigFillSet(void* set);

    public const long SYS_pivot_root = 155; // x86_64
    public const long SYS_pidfd_open = 434, SYS_pidfd_send_signal = 424, SYS_mount_setattr = 442;

    [StructLayout(LayoutKind.Sequential)]
    public struct CapHeader { public uint Version; public int Pid; }
    [StructLayout(LayoutKind.Sequential)]
    public struct CapData { public uint Effective; public uint Permitted; public uint Inheritable; }
    public const uint LINUX_CAPABILITY_VERSION_3 = 0x20080522;

    public static void CheckFd(int fd, string op, string path) { if (fd < 0) throw KernelException.Last(op, path); }

    /// <summary>Writes all of buffer, retrying on EINTR and short writes.</summary>
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
                    if (Marshal.GetLastPInvokeError() == Errnos.EINTR) continue;
                    throw KernelException.Last("write", what);
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
                if (Marshal.GetLastPInvokeError() != Errnos.EINTR) throw KernelException.Last("read", what);
            }
        }
    }

    public static void SetCloexec(int fd, bool on)
    {
        if (Fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0) < 0) throw KernelException.Last("fcntl(F_SETFD)", $"fd {fd}");
    }
}

/// <summary>A file descriptor that closes itself. fd 0 is valid; -1 is invalid.</summary>
public sealed class FdHandle : SafeHandle
{
    public FdHandle(int fd) : base(new IntPtr(-1), ownsHandle: true) => SetHandle(new IntPtr(fd));
    public override bool IsInvalid => handle.ToInt64() < 0;
    public int Fd => (int)handle.ToInt64();
    protected override bool ReleaseHandle() => Native.Close(Fd) == 0;
}
