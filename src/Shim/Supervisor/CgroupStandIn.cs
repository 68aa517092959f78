using CriRuntime.Cgroups;
using CriRuntime.Oci;

namespace CriRuntime.Shim.Supervisor;

// STAND-IN until the cgroup managers (src/Shim/Cgroups, other branch) are merged: does nothing,
// so a container runs in the shim's cgroup with no limits and OOM kills are not detected.
// Replace CgroupStandIn.Create with the real factory once merged; nothing else changes.
internal sealed class NoCgroupManager(string path) : ICgroupManager
{
    public string Path { get; } = path;
    public void Create(CgroupResources resources) { }
    public void AddProcess(int pid) { }
    public void Update(CgroupResources resources) { }
    public CgroupStats Stats() => new() { Timestamp = DateTimeOffset.UtcNow };
    public IReadOnlyList<int> Processes() => [];
    public void Freeze() { }
    public void Thaw() { }
    public void KillAll() { }
    public void Destroy() { }
    public bool OomKilled() => false;
}

internal static class CgroupStandIn
{
    public static ICgroupManager Create(string cgroupsPath) => new NoCgroupManager(cgroupsPath);
}

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
            BlkioThrottleReadBps = r.BlockIo?.ThrottleReadBpsDevice?.Select(T).ToList() ?? [],
            BlkioThrottleWriteBps = r.BlockIo?.ThrottleWriteBpsDevice?.Select(T).ToList() ?? [],
            BlkioThrottleReadIops = r.BlockIo?.ThrottleReadIopsDevice?.Select(T).ToList() ?? [],
            BlkioThrottleWriteIops = r.BlockIo?.ThrottleWriteIopsDevice?.Select(T).ToList() ?? [],
            HugepageLimits = r.HugepageLimits?.ToDictionary(h => h.PageSize, h => h.Limit) ?? new Dictionary<string, ulong>(),
            Unified = r.Unified ?? new Dictionary<string, string>(),
        };
    }
}
