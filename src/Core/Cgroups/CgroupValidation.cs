namespace CriRuntime.Cgroups;

/// <summary>Checks resources against what the kernel accepts before anything is written, so a bad
/// request fails with the OCI field name instead of a half-applied cgroup and a bare EINVAL.</summary>
public static class CgroupValidation
{
    public static void Validate(CgroupResources r)
    {
        const string cpu = "linux.resources.cpu", mem = "linux.resources.memory";
        // Kernel bounds: cpu.shares 2..262144, cfs quota >= 1ms, period 1ms..1s.
        if (r.CpuShares is { } shares && shares is < 2 or > 262144)
            Fail($"{cpu}.shares", "must be between 2 and 262144", shares);
        if (r.CpuQuota is { } quota && quota != -1 && quota < 1000)
            Fail($"{cpu}.quota", "must be -1 or >= 1000", quota);
        if (r.CpuPeriod is { } period && period is < 1000 or > 1_000_000)
            Fail($"{cpu}.period", "must be between 1000 and 1000000", period);
        if (r.CpusetCpus is { } cpus && !IsCpuList(cpus)) Fail($"{cpu}.cpus", "must be a list like 0-3,5", cpus);
        if (r.CpusetMems is { } mems && !IsCpuList(mems)) Fail($"{cpu}.mems", "must be a list like 0-1", mems);

        if (r.MemoryLimit is { } limit && limit != -1 && limit <= 0)
            Fail($"{mem}.limit", "must be -1 or > 0 (leave it null for no change)", limit);
        if (r.MemoryReservation is { } reservation && reservation < -1)
            Fail($"{mem}.reservation", "must be -1 or >= 0", reservation);
        if (r.MemorySwap is { } swap)
        {
            if (swap != -1 && swap <= 0) Fail($"{mem}.swap", "must be -1 or > 0", swap);
            // OCI swap counts memory+swap; without a memory limit there is nothing to add swap to.
            if (swap > 0 && r.MemoryLimit is not > 0)
                Fail($"{mem}.swap", "needs a memory limit > 0 in the same request", swap);
            if (swap > 0 && r.MemoryLimit is > 0 && swap < r.MemoryLimit)
                Fail($"{mem}.swap", $"must be >= the memory limit ({r.MemoryLimit}): it counts memory plus swap", swap);
        }
        if (r.MemorySwappiness is { } swappiness && swappiness is < 0 or > 100)
            Fail($"{mem}.swappiness", "must be between 0 and 100", swappiness);

        if (r.PidsLimit is { } pids && pids < -1) Fail("linux.resources.pids.limit", "must be -1, 0 (unlimited) or > 0", pids);

        if (r.BlkioWeight is { } weight && weight is < 10 or > 1000)
            Fail("linux.resources.blockIO.weight", "must be between 10 and 1000", weight);
        foreach (var w in r.BlkioWeightDevices)
        {
            if (w.Major < 0 || w.Minor < 0) Fail("linux.resources.blockIO.weightDevice", "major and minor must be >= 0", $"{w.Major}:{w.Minor}");
            if (w.Weight is < 10 or > 1000) Fail("linux.resources.blockIO.weightDevice", "weight must be between 10 and 1000", $"{w.Major}:{w.Minor} {w.Weight}");
        }
        CheckDevices("linux.resources.blockIO.throttleReadBpsDevice", r.BlkioThrottleReadBps);
        CheckDevices("linux.resources.blockIO.throttleWriteBpsDevice", r.BlkioThrottleWriteBps);
        CheckDevices("linux.resources.blockIO.throttleReadIOPSDevice", r.BlkioThrottleReadIops);
        CheckDevices("linux.resources.blockIO.throttleWriteIOPSDevice", r.BlkioThrottleWriteIops);

        foreach (var size in r.HugepageLimits.Keys)
        {
            if (!IsPageSize(size)) Fail("linux.resources.hugepageLimits.pageSize", "must look like 2MB or 1GB", size);
        }
        foreach (var (key, value) in r.Unified)
        {
            // Keys name a file inside the cgroup: nothing that could climb out of it.
            if (key.Length == 0 || key.Contains('/') || key.StartsWith('.') || !key.Contains('.') || key.Contains('\0'))
                Fail("linux.resources.unified", "key must be a cgroup file name like memory.high", key);
            // Membership, freezing and controller delegation are the runtime's job; letting the
            // spec write them would bypass what the manager keeps track of.
            if (RuntimeOwnedFiles.Contains(key))
                Fail("linux.resources.unified", "this file is managed by the runtime", key);
            if (value.Contains('\n') || value.Contains('\0'))
                Fail($"linux.resources.unified[{key}]", "value must be a single line", value);
        }
    }

    private static readonly HashSet<string> RuntimeOwnedFiles =
        ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.freeze", "cgroup.kill", "cgroup.type"];

    private static void CheckDevices(string field, IReadOnlyList<BlkioThrottle> devices)
    {
        foreach (var d in devices)
        {
            if (d.Major < 0 || d.Minor < 0) Fail(field, "major and minor must be >= 0", $"{d.Major}:{d.Minor}");
        }
    }

    private static bool IsCpuList(string s)
    {
        // "" is valid: it means "inherit" on v2 and is refused only by the v1 kernel, which says so.
        foreach (var part in s.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var range = part.Split('-');
            if (range.Length > 2 || range.Any(x => x.Length == 0 || !x.All(char.IsAsciiDigit))) return false;
            if (range.Length == 2 && int.Parse(range[0]) > int.Parse(range[1])) return false;
        }
        return true;
    }

    internal static bool IsPageSize(string s)
    {
        var unit = s.Length > 2 ? s[^2..] : "";
        return unit is "KB" or "MB" or "GB" && s[..^2].Length > 0 && s[..^2].All(char.IsAsciiDigit);
    }

    private static void Fail(string field, string rule, object value) =>
        throw new CgroupValidationException(field, rule, value);
}

/// <summary>A resource the kernel would refuse: <see cref="Field"/> is the OCI field
/// ("linux.resources.cpu.shares"), so a caller speaking another schema (the daemon: CRI) can name
/// its own field for the same value instead of parsing the message.</summary>
public sealed class CgroupValidationException(string field, string rule, object value)
    : ArgumentException($"{field}: {rule} (got {value})")
{
    public string Field { get; } = field;
    public string Rule { get; } = rule;
    public object Value { get; } = value;
}
