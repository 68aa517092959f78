using System.Runtime.InteropServices;

namespace CriRuntime.Cgroups;

/// <summary>The libc calls the cgroup code needs. Kept apart from the daemon's interop because the
/// NativeAOT shim compiles these files without the daemon's types.</summary>
internal static partial class CgroupSyscalls
{
    public const int O_WRONLY = 1;
    public const int O_CLOEXEC = 0x80000;
    public const int EINTR = 4, ENOENT = 2, ESRCH = 3, EEXIST = 17;
    public const int SIGKILL = 9;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static unsafe partial nint Write(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mkdir(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Rmdir(string path);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    public static int LastErrno => Marshal.GetLastPInvokeError();

    /// <summary>"open /x: No such file or directory (errno 2)": the operation, the path and errno
    /// in one message, so a failed cgroup write is diagnosable from the log line alone.</summary>
    public static CgroupException Error(string what, int errno) =>
        new($"{what}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
}

/// <summary>A cgroup operation the kernel refused (or a controller that is not there).
/// <see cref="Errno"/> is 0 when the failure did not come from a syscall.</summary>
public sealed class CgroupException(string message, int errno = 0) : IOException(message)
{
    public int Errno { get; } = errno;
}
