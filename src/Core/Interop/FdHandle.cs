using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>A file descriptor that closes itself. fd 0 is a valid descriptor; -1 is invalid.</summary>
public sealed class FdHandle : SafeHandle
{
    public FdHandle(int fd) : base(new IntPtr(-1), ownsHandle: true) => SetHandle(new IntPtr(fd));
    public override bool IsInvalid => handle.ToInt64() < 0;
    public int Fd => (int)handle.ToInt64();
    protected override bool ReleaseHandle() => Libc.Close(Fd) == 0;

    /// <summary>open(2) with O_CLOEXEC added, retried on EINTR.</summary>
    public static FdHandle Open(string path, int flags, uint mode = 0)
    {
        int fd;
        do { fd = Libc.Open(path, flags | Libc.O_CLOEXEC, mode); }
        while (fd < 0 && Errno.Current == Errno.EINTR);
        if (fd < 0) throw Errno.Last("open", path);
        return new FdHandle(fd);
    }
}
