using CriRuntime.Interop;
namespace CriRuntime.Cgroups;

/// <summary>Emptying and removing cgroups, shared by the managers.</summary>
internal static class CgroupTeardown
{
    private const int EBUSY = 16;
    private static readonly TimeSpan BusyTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan KillTimeout = TimeSpan.FromSeconds(10);

    /// <summary>SIGKILLs every process until the cgroup is empty, for kernels without cgroup.kill.
    /// A new pid between rounds means something forked: freeze (when possible) so the list we kill
    /// from is complete, since frozen tasks cannot fork; signal; thaw so the signals are delivered.
    /// Pids already signalled are just waited for.</summary>
    public static void KillLoop(string name, Func<IReadOnlyList<int>> processes, Action? freeze, Action? thaw, string? eventsFile = null)
    {
        var signalled = new HashSet<int>();
        var empty = KernelWait.Until(() =>
        {
            var pids = processes();
            if (pids.Count == 0) return true;
            if (pids.All(signalled.Contains)) return false;
            freeze?.Invoke();
            try
            {
                foreach (var pid in processes())
                {
                    if (Libc.Kill(pid, Libc.SIGKILL) != 0 && Errno.Current != Errno.ESRCH)
                        throw CgroupException.Last($"kill -KILL {pid}", $"(cgroup {name})");
                    signalled.Add(pid);
                }
            }
            finally
            {
                thaw?.Invoke();
            }
            return false;
        }, KillTimeout, eventsFile);
        if (!empty) throw StillPopulated(name, processes());
    }

    /// <summary>Waits for the processes to leave after a cgroup.kill.</summary>
    public static void WaitEmpty(string name, Func<IReadOnlyList<int>> processes, string? eventsFile)
    {
        if (!KernelWait.Until(() => processes().Count == 0, KillTimeout, eventsFile)) throw StillPopulated(name, processes());
    }

    private static CgroupException StillPopulated(string name, IReadOnlyList<int> pids) =>
        new($"kill all in {name}: processes {string.Join(",", pids)} still present after {KillTimeout.TotalSeconds} s");

    /// <summary>The pids in a cgroup and every cgroup below it: a container may have made
    /// sub-cgroups of its own (cgroupns, systemd inside), and they are still the container.</summary>
    public static IReadOnlyList<int> ProcessesBelow(ICgroupFs fs, string dir)
    {
        var pids = new List<int>(CgroupFiles.ParsePids(fs.Read($"{dir}/cgroup.procs")));
        foreach (var child in fs.ListDirectories(dir)) pids.AddRange(ProcessesBelow(fs, $"{dir}/{child}"));
        return pids;
    }

    /// <summary>Removes a cgroup and its sub-cgroups, deepest first (rmdir refuses a cgroup that
    /// still has children). Everything below our cgroup is ours.</summary>
    public static void RemoveTree(ICgroupFs fs, string dir)
    {
        foreach (var child in fs.ListDirectories(dir)) RemoveTree(fs, $"{dir}/{child}");
        RemoveDir(fs, dir);
    }

    /// <summary>rmdir a cgroup directory, tolerating its absence. Right after its last process
    /// exits the kernel can still count it as populated (an unreaped zombie, a css going offline)
    /// and answer EBUSY; no event marks the end of that, so this re-tries, bounded.</summary>
    public static void RemoveDir(ICgroupFs fs, string dir)
    {
        CgroupException? last = null;
        var removed = KernelWait.Until(() =>
        {
            try
            {
                fs.Rmdir(dir);
                return true;
            }
            catch (CgroupException e) when (e.Errno == EBUSY)
            {
                last = e;
                return false;
            }
        }, BusyTimeout);
        if (!removed) throw last ?? new CgroupException($"rmdir {dir}: busy");
    }
}
