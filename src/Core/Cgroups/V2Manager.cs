using System.Globalization;

namespace CriRuntime.Cgroups;

/// <summary>A cgroup in a cgroup2 hierarchy: one directory, controllers enabled top-down through
/// cgroup.subtree_control of the cgroups this manager creates.</summary>
public sealed class V2Manager : ICgroupManager
{
    private static readonly TimeSpan FreezeTimeout = TimeSpan.FromSeconds(5);

    /// <summary>What a container can be limited by; others (rdma, misc) are left alone.</summary>
    private static readonly string[] WantedControllers = ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

    private readonly string _mount;
    private readonly ICgroupFs _fs;

    public string Path { get; }

    /// <summary>The cgroup's directory.</summary>
    public string Dir { get; }

    public V2Manager(string path, string mountPoint, ICgroupFs? fs = null)
    {
        Path = CgroupFiles.NormalizePath(path);
        _mount = mountPoint.TrimEnd('/');
        Dir = $"{_mount}/{Path}";
        _fs = fs ?? CgroupFs.Instance;
    }

    public void Create(CgroupResources resources)
    {
        CgroupValidation.Validate(resources);
        var parts = Path.Split('/');
        var dir = _mount;
        for (var i = 0; i < parts.Length; i++)
        {
            dir = $"{dir}/{parts[i]}";
            // Controllers reach a cgroup only through its parent's subtree_control. We write it
            // only in intermediate cgroups we just made: existing ones (the root, the kubelet's pod
            // cgroups) belong to someone else and already enable what they mean to share. The leaf
            // gets none: v2 forbids processes in a cgroup that hands controllers down.
            if (_fs.Mkdir(dir) && i < parts.Length - 1) EnableControllers(dir);
        }
        Apply(resources);
    }

    private void EnableControllers(string dir)
    {
        var available = (_fs.Read($"{dir}/cgroup.controllers") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var enable = WantedControllers.Where(available.Contains).Select(c => "+" + c).ToArray();
        if (enable.Length == 0) return;
        try
        {
            _fs.Write($"{dir}/cgroup.subtree_control", string.Join(' ', enable));
        }
        catch (CgroupException)
        {
            // The write is all or nothing; one controller the kernel refuses here (cpu with a
            // realtime task, say) must not cost the others. A limit that then needs the missing
            // controller fails later with a message naming it.
            foreach (var c in enable)
            {
                try { _fs.Write($"{dir}/cgroup.subtree_control", c); }
                catch (CgroupException) { }
            }
        }
    }

    public void Update(CgroupResources resources)
    {
        CgroupValidation.Validate(resources);
        Apply(resources);
    }

    private void Apply(CgroupResources r)
    {
        if (r.CpuShares is { } shares)
        {
            // The OCI/runc mapping of v1 shares [2, 262144] onto v2 weight [1, 10000].
            var cpuWeight = 1 + ((shares - 2) * 9999) / 262142;
            Write("cpu", "cpu.weight", cpuWeight.ToString(CultureInfo.InvariantCulture), "linux.resources.cpu.shares");
        }
        if (r.CpuQuota is not null || r.CpuPeriod is not null)
        {
            // cpu.max is "quota period"; the kernel keeps the period when only a quota is given,
            // but a new period alone must restate the current quota.
            var quota = r.CpuQuota is { } q ? CgroupFiles.Format(q)
                : (_fs.Read($"{Dir}/cpu.max") ?? "max").Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "max";
            var value = r.CpuPeriod is { } p ? $"{quota} {p}" : quota;
            Write("cpu", "cpu.max", value, "linux.resources.cpu.quota");
        }
        if (r.CpusetCpus is { } cpus) Write("cpuset", "cpuset.cpus", cpus, "linux.resources.cpu.cpus");
        if (r.CpusetMems is { } mems) Write("cpuset", "cpuset.mems", mems, "linux.resources.cpu.mems");

        if (r.MemoryLimit is { } limit) Write("memory", "memory.max", CgroupFiles.Format(limit), "linux.resources.memory.limit");
        if (r.MemoryReservation is { } low) Write("memory", "memory.low", CgroupFiles.Format(low), "linux.resources.memory.reservation");
        if (r.MemorySwap is { } swap && _fs.Exists($"{Dir}/memory.swap.max"))
        {
            // OCI swap is memory+swap; v2 limits swap alone. Validation guarantees a limit here.
            var value = swap == -1 ? "max" : (swap - r.MemoryLimit!.Value).ToString(CultureInfo.InvariantCulture);
            _fs.Write($"{Dir}/memory.swap.max", value);
        }
        // v2 has no per-cgroup swappiness; runc and crun ignore it as well.

        if (r.PidsLimit is { } pids) Write("pids", "pids.max", pids <= 0 ? "max" : pids.ToString(CultureInfo.InvariantCulture), "linux.resources.pids.limit");

        if (r.BlkioWeight is { } weight)
        {
            // BFQ takes the v1 range as is; io.weight needs [10, 1000] mapped onto [1, 10000].
            if (_fs.Exists($"{Dir}/io.bfq.weight")) _fs.Write($"{Dir}/io.bfq.weight", weight.ToString(CultureInfo.InvariantCulture));
            else Write("io", "io.weight", $"default {1 + (weight - 10) * 9999 / 990}", "linux.resources.blockIO.weight");
        }
        foreach (var w in r.BlkioWeightDevices)
        {
            if (_fs.Exists($"{Dir}/io.bfq.weight")) _fs.Write($"{Dir}/io.bfq.weight", $"{w.Major}:{w.Minor} {w.Weight}");
            else Write("io", "io.weight", $"{w.Major}:{w.Minor} {1 + (w.Weight - 10) * 9999 / 990}", "linux.resources.blockIO.weightDevice");
        }
        IoMax("rbps", r.BlkioThrottleReadBps, "linux.resources.blockIO.throttleReadBpsDevice");
        IoMax("wbps", r.BlkioThrottleWriteBps, "linux.resources.blockIO.throttleWriteBpsDevice");
        IoMax("riops", r.BlkioThrottleReadIops, "linux.resources.blockIO.throttleReadIOPSDevice");
        IoMax("wiops", r.BlkioThrottleWriteIops, "linux.resources.blockIO.throttleWriteIOPSDevice");

        foreach (var (size, max) in r.HugepageLimits)
        {
            // The kubelet sends every page size the node has; without the hugetlb controller
            // here there is nothing to limit, as runc does.
            var file = $"{Dir}/hugetlb.{size}.max";
            if (_fs.Exists(file)) _fs.Write(file, max.ToString(CultureInfo.InvariantCulture));
        }

        // Raw keys last, so they can refine what the typed fields set (runc's order too).
        foreach (var (key, value) in r.Unified)
        {
            var file = $"{Dir}/{key}";
            if (!_fs.Exists(file)) throw new CgroupException($"linux.resources.unified[{key}]: {file} does not exist (controller not enabled?)");
            _fs.Write(file, value);
        }
    }

    private void IoMax(string key, IReadOnlyList<BlkioThrottle> devices, string field)
    {
        foreach (var d in devices) Write("io", "io.max", $"{d.Major}:{d.Minor} {key}={d.Rate}", field);
    }

    private void Write(string controller, string file, string value, string field)
    {
        var path = $"{Dir}/{file}";
        if (!_fs.Exists(path)) throw new CgroupException($"{field}: the {controller} controller is not enabled for {Dir} ({file} missing)");
        _fs.Write(path, value);
    }

    public void AddProcess(int pid) => _fs.Write($"{Dir}/cgroup.procs", pid.ToString(CultureInfo.InvariantCulture));

    /// <summary>Every pid in the cgroup or its sub-cgroups.</summary>
    public IReadOnlyList<int> Processes() => [.. CgroupTeardown.ProcessesBelow(_fs, Dir).Order()];

    public CgroupStats Stats()
    {
        var cpu = CgroupFiles.ParseFlatKeyed(_fs.Read($"{Dir}/cpu.stat"));
        var mem = CgroupFiles.ParseFlatKeyed(_fs.Read($"{Dir}/memory.stat"));
        var usage = Value("memory.current");
        var inactiveFile = mem.Get("inactive_file");
        return new CgroupStats
        {
            Timestamp = DateTimeOffset.UtcNow,
            CpuUsageNanos = cpu.Get("usage_usec") * 1000,
            CpuUserNanos = cpu.Get("user_usec") * 1000,
            CpuSystemNanos = cpu.Get("system_usec") * 1000,
            CpuPeriods = cpu.Get("nr_periods"),
            CpuThrottledPeriods = cpu.Get("nr_throttled"),
            CpuThrottledNanos = cpu.Get("throttled_usec") * 1000,
            MemoryUsageBytes = usage,
            MemoryWorkingSetBytes = usage > inactiveFile ? usage - inactiveFile : 0,
            MemoryRssBytes = mem.Get("anon"),
            MemoryCacheBytes = mem.Get("file"),
            SwapUsageBytes = Value("memory.swap.current"),
            MemoryLimitBytes = Value("memory.max"),
            OomKills = OomKillCount(),
            PidsCurrent = Value("pids.current"),
            PidsLimit = Value("pids.max"),
            CpuPressure = CgroupFiles.ParsePressure(_fs.Read($"{Dir}/cpu.pressure")),
            MemoryPressure = CgroupFiles.ParsePressure(_fs.Read($"{Dir}/memory.pressure")),
            IoPressure = CgroupFiles.ParsePressure(_fs.Read($"{Dir}/io.pressure")),
        };
    }

    private ulong OomKillCount() => CgroupFiles.ParseFlatKeyed(_fs.Read($"{Dir}/memory.events")).Get("oom_kill");

    private ulong Value(string file) => CgroupFiles.ParseValue(_fs.Read($"{Dir}/{file}"));

    /// <summary>True when the kernel has cgroup.freeze (5.2+).</summary>
    public bool CanFreeze => _fs.Exists($"{Dir}/cgroup.freeze");

    /// <summary>True when the kernel has cgroup.kill (5.14+).</summary>
    public bool CanKill => _fs.Exists($"{Dir}/cgroup.kill");

    public void Freeze() => SetFrozen(true);

    public void Thaw() => SetFrozen(false);

    private void SetFrozen(bool frozen)
    {
        var want = frozen ? 1UL : 0UL;
        _fs.Write($"{Dir}/cgroup.freeze", frozen ? "1" : "0");
        var events = $"{Dir}/cgroup.events";
        if (KernelWait.Until(() => CgroupFiles.ParseFlatKeyed(_fs.Read(events)).Get("frozen") == want, FreezeTimeout, events)) return;
        if (frozen) _fs.Write($"{Dir}/cgroup.freeze", "0");
        throw new CgroupException($"{(frozen ? "freeze" : "thaw")} {Dir}: cgroup.events did not report frozen {want} within {FreezeTimeout.TotalSeconds} s");
    }

    public void KillAll()
    {
        if (Processes().Count == 0) return;
        var events = $"{Dir}/cgroup.events";
        if (CanKill)
        {
            // One write kills every process, including ones forking right now: no race to lose.
            _fs.Write($"{Dir}/cgroup.kill", "1");
            CgroupTeardown.WaitEmpty(Dir, Processes, events);
        }
        else
        {
            var canFreeze = CanFreeze;
            CgroupTeardown.KillLoop(Dir, Processes, canFreeze ? Freeze : null, canFreeze ? Thaw : null, events);
        }
    }

    /// <summary>Whether its directory exists (one stat).</summary>
    internal bool Exists() => _fs.Exists(Dir);

    public void Destroy()
    {
        if (!Exists()) return;
        if (Processes().Count > 0) KillAll();
        CgroupTeardown.RemoveTree(_fs, Dir);
    }

    public bool OomKilled() => OomKillCount() > 0;
}
