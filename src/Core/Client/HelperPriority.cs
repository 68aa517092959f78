using CriRuntime.Interop;

namespace CriRuntime.Shim.Client;

/// <summary>The CPU priority of the runtime's helpers while they set a pod or container up: CNI
/// plugins, and a shim from its launch until it creates the container's first process. They run
/// <see cref="Offset"/> nice steps below the daemon (at the default, nice 5: CFS weight 335
/// against the daemon's 1024), so that on a node starting many pods at once the daemon, the
/// kubelet and running workloads get the CPU first and the node keeps answering (issue 18: Status
/// within 100 ms at 1000 pods). The container's own processes never inherit it: the shim goes
/// back to the daemon's nice before it creates them (<see cref="ResetProcess"/>), and so does
/// everything it starts afterwards (execs, the monitor); a daemon an operator runs niced still
/// passes its own nice on to its containers, as before. A restore's CRIU has a nice of its own
/// (docs/checkpoint.md).</summary>
public static class HelperPriority
{
    public const int Offset = 5;

    /// <summary>Set by the daemon for the shim launcher (`criruntime-monitor launch`, or the shim's
    /// `create`), which apply it to themselves first thing: the helpers' nice value.</summary>
    public const string Variable = "CRIRUNTIME_SETUP_NICE";

    /// <summary>Set with <see cref="Variable"/>: the daemon's nice value, the shim's way back.</summary>
    public const string BaseVariable = "CRIRUNTIME_BASE_NICE";

    /// <summary>The calling thread's nice value (the daemon's threads all have the main thread's).</summary>
    public static int Current() => Libc.Getpriority(Libc.PRIO_PROCESS, 0);

    /// <summary>The helpers' nice value for a daemon at <paramref name="daemonNice"/>.</summary>
    public static int For(int daemonNice) => Math.Clamp(daemonNice + Offset, -20, 19);

    /// <summary>The calling thread (and what it starts from now on) at the nice the environment
    /// asks for, if any; best effort.</summary>
    public static void ApplyFromEnvironment()
    {
        if (NiceFrom(Variable) is { } nice) _ = Libc.Setpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid(), nice);
    }

    /// <summary>The nice value the shim goes back to: the daemon's (<see cref="BaseVariable"/>), 0
    /// when the environment does not say.</summary>
    public static int BaseFromEnvironment() => NiceFrom(BaseVariable) ?? 0;

    /// <summary>A nice value (-20..19) from the environment variable <paramref name="name"/>.</summary>
    private static int? NiceFrom(string name) =>
        int.TryParse(System.Environment.GetEnvironmentVariable(name), out var nice) && nice is >= -20 and <= 19 ? nice : null;

    /// <summary>Every thread of this process at nice <paramref name="nice"/> (Linux keeps a nice
    /// value per thread, and a child or an exec'd program inherits its creating thread's). Needs
    /// CAP_SYS_NICE to raise the priority, which the shim has; false, with the first failing
    /// thread's errno, if a thread could not be set.</summary>
    public static bool ResetProcess(int nice, out int errno)
    {
        errno = 0;
        foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
        {
            if (!uint.TryParse(Path.GetFileName(task), out var tid)) continue;
            if (Libc.Setpriority(Libc.PRIO_PROCESS, tid, nice) == 0) continue;
            var e = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (e == Errno.ESRCH) continue; // the thread ended meanwhile
            errno = e;
            return false;
        }
        return true;
    }
}
