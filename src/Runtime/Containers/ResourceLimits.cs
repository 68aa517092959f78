using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Containers;

/// <summary>CRI resources as cgroup limits, validated once for every caller (container create and
/// update, pod create and update) before anything is made or written: a bad value is
/// InvalidArgument naming the caller's CRI field (<c>config.linux.resources.cpu_shares</c>,
/// <c>linux.cpuset_cpus</c>, ...). The kernel's bounds are the shim's own checks
/// (<see cref="CgroupValidation"/>, shared through Core), so the two can never disagree; only the
/// field names are translated.</summary>
public static class ResourceLimits
{
    /// <param name="field">The CRI field holding <paramref name="resources"/> in the request,
    /// e.g. "config.linux.resources" or "linux".</param>
    public static CgroupResources From(LinuxContainerResources? resources, string field)
    {
        if (resources is not null) CheckCri(resources, field);
        try
        {
            var limits = CgroupResourcesFromSpec.Map(SpecBuilder.Resources(resources));
            CgroupValidation.Validate(limits);
            return limits;
        }
        catch (CgroupValidationException e)
        {
            throw Fail.InvalidArgument($"{field}.{CriField(e.Field)}: {e.Rule} (got {e.Value})");
        }
    }

    /// <summary>Rules of the CRI's own encoding (0 means "not set") that have no OCI counterpart
    /// to check later.</summary>
    private static void CheckCri(LinuxContainerResources r, string field)
    {
        if (r.MemoryLimitInBytes < 0)
            throw Fail.InvalidArgument($"{field}.memory_limit_in_bytes: {r.MemoryLimitInBytes} must not be negative");
        if (r.MemoryLimitInBytes is > 0 and < 4096 * 1024)
            throw Fail.InvalidArgument($"{field}.memory_limit_in_bytes: {r.MemoryLimitInBytes} is below the 4 MiB minimum");
        if (r.OomScoreAdj is < -1000 or > 1000)
            throw Fail.InvalidArgument($"{field}.oom_score_adj: {r.OomScoreAdj} is outside -1000..1000");
        if (r.CpuShares < 0)
            throw Fail.InvalidArgument($"{field}.cpu_shares: {r.CpuShares} must not be negative");
        if (r.CpuPeriod < 0)
            throw Fail.InvalidArgument($"{field}.cpu_period: {r.CpuPeriod} must not be negative");
    }

    /// <summary>The LinuxContainerResources field an OCI linux.resources field comes from
    /// (<see cref="SpecBuilder.Resources"/> is the mapping the other way).</summary>
    public static string CriField(string ociField)
    {
        const string prefix = "linux.resources.";
        var f = ociField.StartsWith(prefix, StringComparison.Ordinal) ? ociField[prefix.Length..] : ociField;
        return f switch
        {
            "cpu.shares" => "cpu_shares",
            "cpu.quota" => "cpu_quota",
            "cpu.period" => "cpu_period",
            "cpu.cpus" => "cpuset_cpus",
            "cpu.mems" => "cpuset_mems",
            "memory.limit" => "memory_limit_in_bytes",
            "memory.swap" => "memory_swap_limit_in_bytes",
            "hugepageLimits.pageSize" => "hugepage_limits.page_size",
            _ => f, // unified, unified[key]: same name in both
        };
    }
}
