using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>Process handles that cannot be fooled by pid reuse: a pidfd names one process for
/// its whole life, signals go to it or fail with ESRCH, and it polls readable once it has exited.</summary>
internal static partial class Libc
{
    public const int SIGKILL = 9, SIGTERM = 15;
    private const long SYS_pidfd_send_signal = 424, SYS_pidfd_open = 434; // the same on every architecture
    private const int ESRCH = 3;
    private const short POLLIN = 1;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall4(long number, long a1, long a2, long a3, long a4);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int PollRaw(PollFd* fds, nuint count, int timeoutMs);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd { public int Fd; public short Events; public short Revents; }

    /// <summary>A pidfd for <paramref name="pid"/>, or null when no such process exists.</summary>
    public static FdHandle? PidfdOpen(int pid)
    {
        var fd = Syscall4(SYS_pidfd_open, pid, 0, 0, 0);
        if (fd >= 0) return new FdHandle((int)fd);
        var errno = Marshal.GetLastPInvokeError();
        if (errno == ESRCH) return null;
        throw Errno.Exception("pidfd_open", pid.ToString(System.Globalization.CultureInfo.InvariantCulture), errno);
    }

    /// <summary>Sends <paramref name="signal"/>; false when the process has already exited.</summary>
    public static bool PidfdSignal(FdHandle pidfd, int signal)
    {
        if (Syscall4(SYS_pidfd_send_signal, pidfd.Fd, signal, 0, 0) == 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        if (errno == ESRCH) return false;
        throw Errno.Exception("pidfd_send_signal", $"signal {signal}", errno);
    }

    /// <summary>Blocks until the process has exited (true) or <paramref name="timeout"/> passed (false).</summary>
    public static unsafe bool PidfdWaitExit(FdHandle pidfd, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            var pfd = new PollFd { Fd = pidfd.Fd, Events = POLLIN };
            var left = Math.Max(0, deadline - Environment.TickCount64);
            var n = PollRaw(&pfd, 1, (int)left);
            if (n > 0) return true;
            if (n == 0) return false;
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR) throw Errno.Exception("poll", "pidfd", errno);
        }
    }
}
