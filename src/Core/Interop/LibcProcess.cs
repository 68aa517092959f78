using System.Globalization;
using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>Processes and credentials: spawning (posix_spawn), waiting, signals through pidfds
/// (a pidfd names one process for its whole life, so a recycled pid is never hit), capabilities,
/// ids, rlimits, sessions.</summary>
internal static unsafe partial class Libc
{
    public const int SIGKILL = 9, SIGTERM = 15;

    [StructLayout(LayoutKind.Sequential)]
    public struct CapHeader { public uint Version; public int Pid; }
    [StructLayout(LayoutKind.Sequential)]
    public struct CapData { public uint Effective; public uint Permitted; public uint Inheritable; }
    public const uint LINUX_CAPABILITY_VERSION_3 = 0x20080522;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall2(long number, long a, long b);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall4(long number, long a, long b, long c, long d);
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
    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true)]
    public static partial int Execve(byte* path, byte** argv, byte** envp);
    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    public static partial int Setsid();
    [LibraryImport("libc", EntryPoint = "getppid")]
    public static partial int Getppid();
    [LibraryImport("libc", EntryPoint = "getpid")]
    public static partial int Getpid();
    [LibraryImport("libc", EntryPoint = "gettid")]
    public static partial int Gettid();
    public const int PRIO_PROCESS = 0;
    /// <summary>setpriority(2); with PRIO_PROCESS and a thread id it sets that thread's nice value.</summary>
    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    public static partial int Setpriority(int which, uint who, int prio);
    /// <summary>getpriority(2): the nice value (-1 is also the error return).</summary>
    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    public static partial int Getpriority(int which, uint who);
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int sig);
    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    public static partial int Waitpid(int pid, int* status, int options);
    public const int P_ALL = 0, WEXITED = 4, WNOWAIT = 0x01000000;
    /// <summary>waitid(2); <paramref name="info"/> is a siginfo_t (128 bytes).</summary>
    [LibraryImport("libc", EntryPoint = "waitid", SetLastError = true)]
    public static partial int Waitid(int idtype, int id, byte* info, int options);

    /// <summary>Blocks until some child has exited and returns its pid without reaping it (it
    /// stays a zombie: waitid P_ALL, WEXITED | WNOWAIT); -1 with the errno set on failure (ECHILD:
    /// no children).</summary>
    public static int WaitAnyExitedKeep()
    {
        byte* info = stackalloc byte[128];
        new Span<byte>(info, 128).Clear();
        if (Waitid(P_ALL, 0, info, WEXITED | WNOWAIT) != 0) return -1;
        return *(int*)(info + 16); // si_pid: the union after si_signo, si_errno, si_code and padding on 64-bit
    }
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

    /// <summary>A pidfd for <paramref name="pid"/>, or null when no such process exists.</summary>
    public static FdHandle? PidfdOpen(int pid)
    {
        var fd = Syscall2(SYS_pidfd_open, pid, 0);
        if (fd >= 0) return new FdHandle((int)fd);
        var errno = Errno.Current;
        if (errno == Errno.ESRCH) return null;
        throw Errno.Exception("pidfd_open", pid.ToString(CultureInfo.InvariantCulture), errno);
    }

    /// <summary>pidfd_getfd(2): a duplicate, in this process, of the process's file descriptor
    /// <paramref name="fd"/> (close-on-exec); needs ptrace access to it.</summary>
    public static FdHandle PidfdGetfd(FdHandle pidfd, int fd)
    {
        var dup = Syscall4(SYS_pidfd_getfd, pidfd.Fd, fd, 0, 0);
        if (dup >= 0) return new FdHandle((int)dup);
        throw Errno.Exception("pidfd_getfd", $"fd {fd.ToString(CultureInfo.InvariantCulture)}", Errno.Current);
    }

    /// <summary>Sends <paramref name="signal"/> through a pidfd; false when the process has already exited.</summary>
    public static bool PidfdSignal(FdHandle pidfd, int signal)
    {
        if (Syscall4(SYS_pidfd_send_signal, pidfd.Fd, signal, 0, 0) == 0) return true;
        var errno = Errno.Current;
        if (errno == Errno.ESRCH) return false;
        throw Errno.Exception("pidfd_send_signal", $"signal {signal}", errno);
    }

    /// <summary>Blocks until the process has exited (true) or <paramref name="timeout"/> passed (false).</summary>
    public static bool PidfdWaitExit(FdHandle pidfd, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            var pfd = new PollFd { Fd = pidfd.Fd, Events = POLLIN };
            var left = Math.Max(0, deadline - Environment.TickCount64);
            var n = Poll(&pfd, 1, (int)left);
            if (n > 0) return true;
            if (n == 0) return false;
            var errno = Errno.Current;
            if (errno != Errno.EINTR) throw Errno.Exception("poll", "pidfd", errno);
        }
    }
}
