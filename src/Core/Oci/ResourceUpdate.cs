namespace CriRuntime.Oci;

/// <summary>A live update of a container's linux.resources, as the cgroup managers apply one: a
/// field the update leaves null keeps its value (<see cref="Cgroups.CgroupResources"/>: null is
/// "leave as is"), so the merged spec says what the cgroup holds afterwards. What the daemon
/// decided at creation and the CRI cannot update (device rules, the runtime-wide pids limit)
/// carries over. Hugepage limits merge per page size and unified entries per key.</summary>
public static class ResourceUpdate
{
    /// <exception cref="ArgumentException">The update names device rules: rules are written in
    /// order at creation (deny all, then allows) and are not replayed on a live cgroup.</exception>
    public static LinuxResources Merge(LinuxResources? current, LinuxResources update)
    {
        if (update.Devices is { Count: > 0 })
            throw new ArgumentException("linux.resources.devices: device rules cannot be updated on a live container");
        current ??= new LinuxResources();
        return current with
        {
            Cpu = Merge(current.Cpu, update.Cpu),
            Memory = Merge(current.Memory, update.Memory),
            Pids = update.Pids ?? current.Pids,
            BlockIo = Merge(current.BlockIo, update.BlockIo),
            HugepageLimits = update.HugepageLimits is null ? current.HugepageLimits
                : [.. (current.HugepageLimits ?? []).Where(h => update.HugepageLimits.All(u => u.PageSize != h.PageSize)), .. update.HugepageLimits],
            Network = update.Network ?? current.Network,
            Unified = update.Unified is null ? current.Unified : Merge(current.Unified, update.Unified),
        };
    }

    private static Dictionary<string, string> Merge(IReadOnlyDictionary<string, string>? current, IReadOnlyDictionary<string, string> update)
    {
        var merged = current is null ? new Dictionary<string, string>() : new Dictionary<string, string>(current);
        foreach (var (key, value) in update) merged[key] = value;
        return merged;
    }

    private static LinuxCpu? Merge(LinuxCpu? c, LinuxCpu? u) => u is null ? c : c is null ? u : new LinuxCpu
    {
        Shares = u.Shares ?? c.Shares,
        Quota = u.Quota ?? c.Quota,
        Period = u.Period ?? c.Period,
        RealtimeRuntime = u.RealtimeRuntime ?? c.RealtimeRuntime,
        RealtimePeriod = u.RealtimePeriod ?? c.RealtimePeriod,
        Cpus = u.Cpus ?? c.Cpus,
        Mems = u.Mems ?? c.Mems,
        Idle = u.Idle ?? c.Idle,
    };

    private static LinuxMemory? Merge(LinuxMemory? c, LinuxMemory? u) => u is null ? c : c is null ? u : new LinuxMemory
    {
        Limit = u.Limit ?? c.Limit,
        Reservation = u.Reservation ?? c.Reservation,
        Swap = u.Swap ?? c.Swap,
        Kernel = u.Kernel ?? c.Kernel,
        KernelTcp = u.KernelTcp ?? c.KernelTcp,
        Swappiness = u.Swappiness ?? c.Swappiness,
        DisableOomKiller = u.DisableOomKiller ?? c.DisableOomKiller,
        UseHierarchy = u.UseHierarchy ?? c.UseHierarchy,
    };

    private static LinuxBlockIo? Merge(LinuxBlockIo? c, LinuxBlockIo? u) => u is null ? c : c is null ? u : new LinuxBlockIo
    {
        Weight = u.Weight ?? c.Weight,
        LeafWeight = u.LeafWeight ?? c.LeafWeight,
        WeightDevice = u.WeightDevice ?? c.WeightDevice,
        ThrottleReadBpsDevice = u.ThrottleReadBpsDevice ?? c.ThrottleReadBpsDevice,
        ThrottleWriteBpsDevice = u.ThrottleWriteBpsDevice ?? c.ThrottleWriteBpsDevice,
        ThrottleReadIopsDevice = u.ThrottleReadIopsDevice ?? c.ThrottleReadIopsDevice,
        ThrottleWriteIopsDevice = u.ThrottleWriteIopsDevice ?? c.ThrottleWriteIopsDevice,
    };
}
