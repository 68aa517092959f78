using CriRuntime.Cgroups;
using CriRuntime.Oci;

namespace CriRuntime.Cgroups;

/// <summary>linux.resources (OCI) → <see cref="CgroupResources"/> (the cgroup manager's input).</summary>
public static class CgroupResourcesFromSpec
{
    public static CgroupResources Map(LinuxResources? r)
    {
        if (r is null) return new CgroupResources();
        static BlkioThrottle T(LinuxThrottleDevice d) => new(d.Major, d.Minor, d.Rate);
        return new CgroupResources
        {
            CpuShares = r.Cpu?.Shares,
            CpuQuota = r.Cpu?.Quota,
            CpuPeriod = r.Cpu?.Period,
            CpusetCpus = r.Cpu?.Cpus,
            CpusetMems = r.Cpu?.Mems,
            MemoryLimit = r.Memory?.Limit,
            MemoryReservation = r.Memory?.Reservation,
            MemorySwap = r.Memory?.Swap,
            MemorySwappiness = r.Memory?.Swappiness is { } s ? (long)s : null,
            PidsLimit = r.Pids?.Limit,
            BlkioWeight = r.BlockIo?.Weight,
            BlkioWeightDevices = r.BlockIo?.WeightDevice?.Where(w => w.Weight is not null).Select(w => new BlkioWeightDevice(w.Major, w.Minor, w.Weight!.Value)).ToList() ?? [],
            Devices = r.Devices?.Select(d => new DeviceRule(d.Allow, d.Type ?? "a", d.Major, d.Minor, d.Access ?? "rwm")).ToList() ?? [],
            BlkioThrottleReadBps = r.BlockIo?.ThrottleReadBpsDevice?.Select(T).ToList() ?? [],
            BlkioThrottleWriteBps = r.BlockIo?.ThrottleWriteBpsDevice?.Select(T).ToList() ?? [],
            BlkioThrottleReadIops = r.BlockIo?.ThrottleReadIopsDevice?.Select(T).ToList() ?? [],
            BlkioThrottleWriteIops = r.BlockIo?.ThrottleWriteIopsDevice?.Select(T).ToList() ?? [],
            HugepageLimits = r.HugepageLimits?.ToDictionary(h => h.PageSize, h => h.Limit) ?? new Dictionary<string, ulong>(),
            Unified = r.Unified ?? new Dictionary<string, string>(),
        };
    }
}
