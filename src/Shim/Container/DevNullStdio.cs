using CriRuntime.Interop;
using CriRuntime.Shim.Kernel;

namespace CriRuntime.Shim.Container;

/// <summary>The supervisor gives the init /dev/null for a stdio it has nothing for, opened in the
/// host's mount namespace. Once in the container's root, each such descriptor is replaced by the
/// container's own /dev/null (runc's reOpenDevNull does the same): CRIU cannot checkpoint a file
/// on a mount the container cannot see ("Can't lookup mount=N for fd=0").</summary>
public static unsafe class DevNullStdio
{
    private const int O_RDWR = 2, O_CLOEXEC = 0x80000, AT_EMPTY_PATH = 0x1000;
    private const uint STATX_TYPE = 1, S_IFMT = 0xF000, S_IFCHR = 0x2000;

    public static void Reopen(IKernel k)
    {
        FdHandle? devNull = null;
        try
        {
            for (var fd = 0; fd <= 2; fd++)
            {
                if (!IsDevNull(fd)) continue;
                devNull ??= k.Open("/dev/null", O_RDWR | O_CLOEXEC, 0);
                k.Dup2(devNull, fd);
            }
        }
        finally { devNull?.Dispose(); }
    }

    /// <summary>A character device 1:3 (mem's null), whichever mount it was opened through.</summary>
    private static bool IsDevNull(int fd)
    {
        var buffer = stackalloc byte[256];
        if (Libc.Statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, buffer) != 0) return false;
        var mode = *(ushort*)(buffer + 28);
        return (mode & S_IFMT) == S_IFCHR && *(uint*)(buffer + 128) == 1 && *(uint*)(buffer + 132) == 3;
    }
}
