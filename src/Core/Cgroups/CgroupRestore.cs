namespace CriRuntime.Cgroups;

/// <summary>The undo of a cgroup update: what to write to put back, for every limit the update
/// writes, the limit the container had before (from the spec it was created or last updated
/// with). A limit that was unset before goes back to unlimited where the kernel has a value for
/// that (-1 for the CPU quota, memory, swap and pids; a throttle rate of 0 removes a v1 throttle);
/// limits with no such value (shares, cpusets, period, reservation, swappiness, hugepages, raw
/// unified keys) are put back only when they were set, otherwise left as the update wrote them.</summary>
public static class CgroupRestore
{
    public static CgroupResources Previous(CgroupResources before, CgroupResources written) => new()
    {
        CpuShares = written.CpuShares is null ? null : before.CpuShares,
        CpuQuota = written.CpuQuota is null ? null : before.CpuQuota ?? -1,
        CpuPeriod = written.CpuPeriod is null ? null : before.CpuPeriod,
        CpusetCpus = written.CpusetCpus is null ? null : before.CpusetCpus,
        CpusetMems = written.CpusetMems is null ? null : before.CpusetMems,
        MemoryLimit = written.MemoryLimit is null ? null : before.MemoryLimit ?? -1,
        MemoryReservation = written.MemoryReservation is null ? null : before.MemoryReservation,
        MemorySwap = written.MemorySwap is null ? null : before.MemorySwap ?? -1,
        MemorySwappiness = written.MemorySwappiness is null ? null : before.MemorySwappiness,
        PidsLimit = written.PidsLimit is null ? null : before.PidsLimit ?? -1,
        BlkioWeight = written.BlkioWeight is null ? null : before.BlkioWeight,
        // A device weight has no "unset" the kernel takes on every scheduler: put back the ones set.
        BlkioWeightDevices = [.. written.BlkioWeightDevices.Select(w => before.BlkioWeightDevices.FirstOrDefault(b => b.Major == w.Major && b.Minor == w.Minor)).OfType<BlkioWeightDevice>()],
        BlkioThrottleReadBps = Throttles(before.BlkioThrottleReadBps, written.BlkioThrottleReadBps),
        BlkioThrottleWriteBps = Throttles(before.BlkioThrottleWriteBps, written.BlkioThrottleWriteBps),
        BlkioThrottleReadIops = Throttles(before.BlkioThrottleReadIops, written.BlkioThrottleReadIops),
        BlkioThrottleWriteIops = Throttles(before.BlkioThrottleWriteIops, written.BlkioThrottleWriteIops),
        HugepageLimits = written.HugepageLimits.Keys.Where(before.HugepageLimits.ContainsKey).ToDictionary(k => k, k => before.HugepageLimits[k]),
        Unified = written.Unified.Keys.Where(before.Unified.ContainsKey).ToDictionary(k => k, k => before.Unified[k]),
    };

    private static List<BlkioThrottle> Throttles(IReadOnlyList<BlkioThrottle> before, IReadOnlyList<BlkioThrottle> written) =>
        [.. written.Select(w => before.FirstOrDefault(b => b.Major == w.Major && b.Minor == w.Minor) ?? w with { Rate = 0 })];
}
