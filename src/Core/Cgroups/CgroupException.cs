using CriRuntime.Interop;

namespace CriRuntime.Cgroups;

/// <summary>A cgroup operation the kernel refused (or a controller that is not there).
/// <see cref="Errno"/> is 0 when the failure did not come from a syscall.</summary>
public sealed class CgroupException(string message, int errno = 0) : IOException(message)
{
    public int Errno { get; } = errno;

    /// <summary>A failed syscall on a cgroup, described as every failed syscall is
    /// (<see cref="Interop.Errno.Describe"/>: "mkdir /x: No such file or directory (errno 2)"),
    /// so a failed cgroup write is diagnosable from the log line alone.</summary>
    public static CgroupException FromErrno(string operation, string path, int errno) =>
        new(Interop.Errno.Describe(operation, path, errno), errno);

    public static CgroupException Last(string operation, string path) => FromErrno(operation, path, Interop.Errno.Current);
}
