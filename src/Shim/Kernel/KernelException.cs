using System.Runtime.InteropServices;

namespace CriRuntime.Shim.Kernel;

/// <summary>A failed system call: which one, on what, and errno. Callers that tolerate a
/// specific failure (EPERM on a negative oom_score_adj) test <see cref="Errno"/>.</summary>
public sealed class KernelException(string operation, string path, int errno)
    : IOException($"{operation} {path}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})")
{
    public string Operation { get; } = operation;
    public string Path { get; } = path;
    public int Errno { get; } = errno;

    public static KernelException Last(string operation, string path) => new(operation, path, Marshal.GetLastPInvokeError());
}

public static class Errnos
{
    public const int EPERM = 1, ENOENT = 2, EINTR = 4, ECHILD = 10, EAGAIN = 11, EACCES = 13, EBUSY = 16,
        EEXIST = 17, ENOTDIR = 20, EINVAL = 22, EROFS = 30, ENOSYS = 38;
}
