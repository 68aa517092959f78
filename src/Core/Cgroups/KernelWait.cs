using System.Diagnostics;
using CriRuntime.Interop;

namespace CriRuntime.Cgroups;

/// <summary>Waits for a cgroup to reach a state (frozen, empty) by re-reading the kernel's view.
/// v2 announces changes of cgroup.events through inotify, so there we block on that; v1 freezer
/// and cgroup.procs announce nothing, so there the loop re-reads with a backing-off SpinWait.
/// Always bounded by a deadline: callers turn a timeout into an error naming the cgroup.</summary>
internal static class KernelWait
{
    private const int IN_CLOEXEC = 0x80000, IN_NONBLOCK = 0x800;
    private const uint IN_MODIFY = 0x2;

    /// <summary>True once <paramref name="condition"/> holds, false when <paramref name="timeout"/>
    /// passes first. <paramref name="eventsFile"/> (a v2 cgroup.events) is watched to wake up on
    /// change; some conditions (cgroup.procs emptying while a zombie keeps "populated 1") raise no
    /// event, so even then the wait re-reads at least every 20 ms.</summary>
    public static unsafe bool Until(Func<bool> condition, TimeSpan timeout, string? eventsFile = null)
    {
        if (condition()) return true;
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var fd = eventsFile is null ? -1 : Libc.InotifyInit1(IN_CLOEXEC | IN_NONBLOCK);
        if (fd >= 0 && Libc.InotifyAddWatch(fd, eventsFile!, IN_MODIFY) < 0)
        {
            Libc.Close(fd);
            fd = -1;
        }
        try
        {
            var spin = new SpinWait();
            var buffer = stackalloc byte[512];
            while (true)
            {
                // Checked after the watch is in place, so a change between the first check and
                // inotify_add_watch is not missed.
                if (condition()) return true;
                var remaining = deadline - Stopwatch.GetTimestamp();
                if (remaining <= 0) return condition();
                if (fd >= 0)
                {
                    var ms = (int)Math.Clamp(remaining * 1000 / Stopwatch.Frequency, 1, 20);
                    var pfd = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN };
                    if (Libc.Poll(&pfd, 1, ms) > 0)
                    {
                        while (Libc.Read(fd, buffer, 512) > 0) { } // drain; the content does not matter
                    }
                }
                else
                {
                    spin.SpinOnce(sleep1Threshold: 10);
                }
            }
        }
        finally
        {
            if (fd >= 0) Libc.Close(fd);
        }
    }
}
