namespace CriRuntime.Cgroups;

/// <summary>A cgroup on a hybrid node: limits go to the v1 hierarchies, except what only the
/// cgroup2 mount has (hugetlb when v1 lacks it, raw unified keys). Processes join both, so the v2
/// side's cgroup.kill and cgroup.events see exactly the container's processes.</summary>
public sealed class HybridManager : ICgroupManager
{
    private readonly CgroupLayout _layout;
    private readonly V1Manager _v1;
    private readonly V2Manager _v2;

    public string Path => _v1.Path;

    public HybridManager(string path, CgroupLayout layout, ICgroupFs? fs = null)
    {
        if (layout.UnifiedMount is null) throw new ArgumentException("layout: hybrid needs a cgroup2 mount", nameof(layout));
        _layout = layout;
        _v1 = new V1Manager(path, layout, fs);
        _v2 = new V2Manager(path, layout.UnifiedMount, fs);
    }

    private bool V1HasHugetlb => _layout.V1Mounts.ContainsKey("hugetlb");

    private CgroupResources V1Part(CgroupResources r) => r with
    {
        HugepageLimits = V1HasHugetlb ? r.HugepageLimits : new Dictionary<string, ulong>(),
        Unified = new Dictionary<string, string>(),
    };

    private CgroupResources V2Part(CgroupResources r) => new()
    {
        HugepageLimits = V1HasHugetlb ? new Dictionary<string, ulong>() : r.HugepageLimits,
        Unified = r.Unified,
    };

    public void Create(CgroupResources resources)
    {
        CgroupValidation.Validate(resources);
        _v1.Create(V1Part(resources));
        _v2.Create(V2Part(resources));
    }

    public void Update(CgroupResources resources)
    {
        CgroupValidation.Validate(resources);
        _v1.Update(V1Part(resources));
        _v2.Update(V2Part(resources));
    }

    public void AddProcess(int pid)
    {
        _v1.AddProcess(pid);
        _v2.AddProcess(pid);
    }

    public IReadOnlyList<int> Processes() => [.. _v1.Processes().Union(_v2.Processes()).Order()];

    public CgroupStats Stats()
    {
        // PSI is tracked by the cgroup2 membership of tasks, so the cgroup2 mount has real
        // per-cgroup pressure files even with no controller enabled there.
        var v2 = _v2.Stats();
        var stats = _v1.Stats() with { CpuPressure = v2.CpuPressure, MemoryPressure = v2.MemoryPressure, IoPressure = v2.IoPressure };
        if (_layout.V1Mounts.ContainsKey("cpuacct")) return stats;
        // Without v1 cpuacct, the v2 core cpu.stat (there even with no controller enabled) has usage.
        return stats with { CpuUsageNanos = v2.CpuUsageNanos, CpuUserNanos = v2.CpuUserNanos, CpuSystemNanos = v2.CpuSystemNanos };
    }

    // The v1 freezer when mounted, so freezer.state tells the same story to every v1 tool.
    private bool FreezeOnV1 => _layout.V1Mounts.ContainsKey("freezer");

    public void Freeze()
    {
        if (FreezeOnV1) _v1.Freeze();
        else _v2.Freeze();
    }

    public void Thaw()
    {
        if (FreezeOnV1) _v1.Thaw();
        else _v2.Thaw();
    }

    public void KillAll()
    {
        // cgroup.kill on the v2 side is atomic against forks; the v1 loop then sweeps anything
        // that joined the v1 hierarchies only.
        if (_v2.CanKill) _v2.KillAll();
        _v1.KillAll();
    }

    public void Destroy()
    {
        // Usually its shim removed it already: one stat per hierarchy, and nothing read inside.
        if (_v1.ExistingDirs().Count == 0 && !_v2.Exists()) return;
        if (Processes().Count > 0) KillAll();
        _v1.Destroy();
        _v2.Destroy();
    }

    public bool OomKilled() => _v1.OomKilled();
}
