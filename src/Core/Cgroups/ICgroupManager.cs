namespace CriRuntime.Cgroups;

/// <summary>Resource limits for one cgroup, in the units of the OCI runtime spec
/// (linux.resources). Null means "leave as is / unlimited". The manager translates to v1 or v2 files.</summary>
public sealed record CgroupResources
{
    // cpu
    public ulong? CpuShares { get; init; }          // v1 cpu.shares; v2 cpu.weight via the standard conversion
    public long? CpuQuota { get; init; }            // microseconds per period; -1 unlimited
    public ulong? CpuPeriod { get; init; }          // microseconds
    public string? CpusetCpus { get; init; }
    public string? CpusetMems { get; init; }
    // memory
    public long? MemoryLimit { get; init; }         // bytes; -1 unlimited
    public long? MemoryReservation { get; init; }   // bytes (v2 memory.low)
    public long? MemorySwap { get; init; }          // bytes of memory+swap (OCI semantics); -1 unlimited
    public long? MemorySwappiness { get; init; }
    // pids
    public long? PidsLimit { get; init; }           // -1 or 0 unlimited
    // block I/O
    public ushort? BlkioWeight { get; init; }       // 10..1000
    public IReadOnlyList<BlkioWeightDevice> BlkioWeightDevices { get; init; } = []; // per device, 10..1000
    public IReadOnlyList<BlkioThrottle> BlkioThrottleReadBps { get; init; } = [];
    public IReadOnlyList<BlkioThrottle> BlkioThrottleWriteBps { get; init; } = [];
    public IReadOnlyList<BlkioThrottle> BlkioThrottleReadIops { get; init; } = [];
    public IReadOnlyList<BlkioThrottle> BlkioThrottleWriteIops { get; init; } = [];
    // hugetlb: page size ("2MB", "1GB") -> limit in bytes
    public IReadOnlyDictionary<string, ulong> HugepageLimits { get; init; } = new Dictionary<string, ulong>();
    /// <summary>Raw v2 files (CRI "unified"); refused on v1.</summary>
    public IReadOnlyDictionary<string, string> Unified { get; init; } = new Dictionary<string, string>();

    /// <summary>Device access rules (OCI linux.resources.devices), enforced by the v1 devices
    /// controller; empty leaves the device cgroup as it is. cgroup v2 would need an eBPF
    /// device program, which is not implemented: v2 ignores these rules.</summary>
    public IReadOnlyList<DeviceRule> Devices { get; init; } = [];
}

public sealed record BlkioThrottle(long Major, long Minor, ulong Rate);

/// <summary>A proportional I/O weight (10..1000, the v1 scale) for one device.</summary>
public sealed record BlkioWeightDevice(long Major, long Minor, ushort Weight);

/// <summary>A device cgroup rule, applied in order: Type "a" (all), "c" or "b"; a null major or
/// minor is the wildcard "*"; Access a subset of "rwm".</summary>
public sealed record DeviceRule(bool Allow, string Type, long? Major, long? Minor, string Access)
{
    public override string ToString() => $"{Type} {(Major is { } ma ? ma.ToString(System.Globalization.CultureInfo.InvariantCulture) : "*")}:{(Minor is { } mi ? mi.ToString(System.Globalization.CultureInfo.InvariantCulture) : "*")} {Access}";
}

/// <summary>Usage read back from a cgroup, in v2-style units whatever the hierarchy. A limit
/// with no value set ("max" on v2, the huge page-counter maximum on v1) reads as ulong.MaxValue.</summary>
public sealed record CgroupStats
{
    public ulong CpuUsageNanos { get; init; }
    public ulong CpuUserNanos { get; init; }
    public ulong CpuSystemNanos { get; init; }
    /// <summary>CFS enforcement periods elapsed (nr_periods), of which CpuThrottledPeriods throttled.</summary>
    public ulong CpuPeriods { get; init; }
    public ulong CpuThrottledPeriods { get; init; }
    public ulong CpuThrottledNanos { get; init; }
    public ulong MemoryUsageBytes { get; init; }
    /// <summary>usage minus inactive file pages: what the kubelet evicts on.</summary>
    public ulong MemoryWorkingSetBytes { get; init; }
    public ulong MemoryRssBytes { get; init; }
    public ulong MemoryCacheBytes { get; init; }
    public ulong SwapUsageBytes { get; init; }
    public ulong MemoryLimitBytes { get; init; }
    public ulong OomKills { get; init; }
    public ulong PidsCurrent { get; init; }
    public ulong PidsLimit { get; init; }
    /// <summary>Pressure stall information of the cgroup; null where the kernel keeps none for it
    /// (only cgroup2 has per-cgroup PSI; a v1-only cgroup has no PSI, which is not zero PSI).</summary>
    public Pressure? CpuPressure { get; init; }
    public Pressure? MemoryPressure { get; init; }
    public Pressure? IoPressure { get; init; }
    public DateTimeOffset Timestamp { get; init; }
}

/// <summary>One line of a PSI file: stall time in microseconds and the running averages in percent.</summary>
public sealed record PsiLine(ulong TotalMicros, double Avg10, double Avg60, double Avg300);

/// <summary>A PSI file: "some" (at least one task stalled) and "full" (all non-idle tasks stalled).</summary>
public sealed record Pressure(PsiLine? Some, PsiLine? Full);

/// <summary>One cgroup, wherever it lives (v1 controllers, unified v2, or hybrid). Every v1/v2
/// difference stays behind this interface: business code never asks which version it runs on.
/// Paths are relative to the hierarchy roots, e.g. "kubepods/pod123/abc". The manager only ever
/// touches cgroups it created (or that the caller names explicitly as its own).</summary>
public interface ICgroupManager
{
    /// <summary>The cgroup's path relative to the hierarchy roots.</summary>
    string Path { get; }

    /// <summary>Creates the cgroup (and missing parents) in every hierarchy and applies the limits.
    /// Idempotent.</summary>
    void Create(CgroupResources resources);

    /// <summary>Moves a process into the cgroup (in every hierarchy).</summary>
    void AddProcess(int pid);

    /// <summary>Changes limits of a live cgroup.</summary>
    void Update(CgroupResources resources);

    CgroupStats Stats();

    /// <summary>Pids of every process in the cgroup.</summary>
    IReadOnlyList<int> Processes();

    void Freeze();
    void Thaw();

    /// <summary>SIGKILLs every process in the cgroup (cgroup.kill where available, else each pid).</summary>
    void KillAll();

    /// <summary>Removes the cgroup once empty (kills stragglers first). Idempotent: a missing cgroup is fine.</summary>
    void Destroy();

    /// <summary>True once the cgroup's OOM killer has killed something since creation.</summary>
    bool OomKilled();
}
