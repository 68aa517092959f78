using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>errno to exception, in one place: every failed system call of the daemon, the shim and
/// the shared code becomes a <see cref="KernelException"/> naming the operation, the path and
/// errno ("mount overlay on /x: Operation not permitted (errno 1)").</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ECHILD = 10, EAGAIN = 11, EWOULDBLOCK = 11,
        EACCES = 13, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENOTDIR = 20, EINVAL = 22, EROFS = 30, ENOSYS = 38, ENODATA = 61,
        EOPNOTSUPP = 95, ECONNRESET = 104;

    /// <summary>errno of the last P/Invoke into libc on this thread.</summary>
    public static int Current => Marshal.GetLastPInvokeError();

    /// <summary>"OPERATION PATH: strerror (errno N)".</summary>
    public static string Describe(string operation, string path, int errno) =>
        $"{operation} {path}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    public static KernelException Exception(string operation, string path, int errno) => new(operation, path, errno);

    public static KernelException Last(string operation, string path) => new(operation, path, Current);

    /// <summary>Throws when a call that returns 0 on success returned anything else.</summary>
    public static void Check(int rc, string operation, string path)
    {
        if (rc != 0) throw Last(operation, path);
    }
}

/// <summary>A failed system call: which one, on what, and errno (also the exception's HResult,
/// as .NET's own IOExceptions carry it). Callers that tolerate a specific failure (EPERM on a
/// negative oom_score_adj, EOPNOTSUPP on an xattr) test <see cref="Errno"/>.</summary>
public sealed class KernelException(string operation, string path, int errno)
    : IOException(CriRuntime.Interop.Errno.Describe(operation, path, errno), errno)
{
    public string Operation { get; } = operation;
    public string Path { get; } = path;
    public int Errno { get; } = errno;

    public static KernelException Last(string operation, string path) => new(operation, path, Marshal.GetLastPInvokeError());
}
