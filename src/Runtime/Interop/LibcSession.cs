using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>What a process needs to detach itself from the one that started it (the stream
/// server): its own session, and its standard descriptors pointed elsewhere.</summary>
internal static partial class Libc
{
    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    private static partial int SetsidRaw();

    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    private static partial int Dup2Raw(int oldFd, int newFd);

    /// <summary>setsid(2); already a session leader (EPERM) is fine.</summary>
    public static void Setsid()
    {
        const int EPERM = 1;
        if (SetsidRaw() < 0 && Marshal.GetLastPInvokeError() != EPERM) throw Errno.Last("setsid", "");
    }

    /// <summary>dup2(2): <paramref name="newFd"/> becomes a copy of <paramref name="oldFd"/>.</summary>
    public static void Dup2(int oldFd, int newFd, string what)
    {
        while (Dup2Raw(oldFd, newFd) < 0)
            if (Marshal.GetLastPInvokeError() != Errno.EINTR) throw Errno.Last("dup2", what);
    }
}
