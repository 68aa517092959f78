using System.Globalization;

namespace CriRuntime.Cgroups;

/// <summary>A cgroup on v1 hierarchies: one directory per mounted hierarchy (co-mounted controllers
/// share one), each controller's limits in its own files.</summary>
public sealed class V1Manager : ICgroupManager
{
    private static readonly TimeSpan FreezeTimeout = TimeSpan.FromSeconds(5);

    private readonly CgroupLayout _layout;
    private readonly ICgroupFs _fs;

    public string Path { get; }

    public V1Manager(string path, CgroupLayout layout, ICgroupFs? fs = null)
    {
        if (layout.V1Mounts.Count == 0) throw new ArgumentException("layout: no v1 hierarchy is mounted", nameof(layout));
        Path = CgroupFiles.NormalizePath(path);
        _layout = layout;
        _fs = fs ?? CgroupFs.Instance;
    }

    /// <summary>This cgroup's directory in the hierarchy holding <paramref name="controller"/>, or
    /// null when that controller is not mounted.</summary>
    public string? Dir(string controller) =>
        _layout.V1Mounts.TryGetValue(controller, out var mount) ? $"{mount.TrimEnd('/')}/{Path}" : null;

    private IEnumerable<string> Dirs => _layout.V1Hierarchies.Select(m => $"{m.TrimEnd('/')}/{Path}");

    public void Create(CgroupResources resources)
    {
        CgroupValidation.Validate(resources);
        RefuseUnified(resources);
        foreach (var mount in _layout.V1Hierarchies)
        {
            var isCpuset = _layout.V1Mounts.TryGetValue("cpuset", out var cpusetMount) && cpusetMount == mount;
            var dir = mount.TrimEnd('/');
            foreach (var part in Path.Split('/'))
            {
                var parent = dir;
                dir = $"{dir}/{part}";
                // A new v1 cpuset starts with empty cpus and mems and refuses tasks until both are
                // set; inherit the parent's so intermediate cgroups are usable too. Also where the
                // level was there already: a concurrent create may have made it and not yet filled
                // it in (a level that has its values is only read), as runc does.
                _fs.Mkdir(dir);
                if (isCpuset) InheritCpuset(parent, dir);
            }
        }
        Apply(resources);
    }

    private void InheritCpuset(string parent, string dir)
    {
        foreach (var file in (ReadOnlySpan<string>)["cpuset.cpus", "cpuset.mems"])
        {
            if ((_fs.Read($"{dir}/{file}") ?? "").Trim().Length > 0) continue;
            var value = (_fs.Read($"{parent}/{file}") ?? "").Trim();
            if (value.Length > 0) _fs.Write($"{dir}/{file}", value);
        }
    }

    public void Update(CgroupResources resources)
    {
        CgroupValidation.Validate(resources);
        RefuseUnified(resources);
        Apply(resources);
    }

    private static void RefuseUnified(CgroupResources r)
    {
        if (r.Unified.Count > 0)
            throw new ArgumentException($"linux.resources.unified: needs cgroup v2, this node runs cgroup v1 (keys: {string.Join(", ", r.Unified.Keys)})");
    }

    private void Apply(CgroupResources r)
    {
        if (r.CpuShares is { } shares) Write("cpu", "cpu.shares", shares.ToString(CultureInfo.InvariantCulture), "linux.resources.cpu.shares");
        // Period first: the kernel validates quota/period as a ratio (against the parent's), so the
        // quota must be checked against the period it will run with.
        if (r.CpuPeriod is { } period) Write("cpu", "cpu.cfs_period_us", period.ToString(CultureInfo.InvariantCulture), "linux.resources.cpu.period");
        if (r.CpuQuota is { } quota) Write("cpu", "cpu.cfs_quota_us", quota.ToString(CultureInfo.InvariantCulture), "linux.resources.cpu.quota");
        if (r.CpusetCpus is { } cpus) Write("cpuset", "cpuset.cpus", cpus, "linux.resources.cpu.cpus");
        if (r.CpusetMems is { } mems) Write("cpuset", "cpuset.mems", mems, "linux.resources.cpu.mems");

        ApplyMemory(r);
        if (r.MemoryReservation is { } reservation) Write("memory", "memory.soft_limit_in_bytes", reservation.ToString(CultureInfo.InvariantCulture), "linux.resources.memory.reservation");
        if (r.MemorySwappiness is { } swappiness) Write("memory", "memory.swappiness", swappiness.ToString(CultureInfo.InvariantCulture), "linux.resources.memory.swappiness");

        if (r.PidsLimit is { } pids) Write("pids", "pids.max", pids <= 0 ? "max" : pids.ToString(CultureInfo.InvariantCulture), "linux.resources.pids.limit");

        if (r.BlkioWeight is { } weight)
        {
            var dir = Require("blkio", "linux.resources.blockIO.weight");
            // blkio.weight belongs to CFQ, gone since 5.0; with BFQ the knob is blkio.bfq.weight.
            var file = _fs.Exists($"{dir}/blkio.weight") ? "blkio.weight"
                : _fs.Exists($"{dir}/blkio.bfq.weight") ? "blkio.bfq.weight"
                : throw new CgroupException($"linux.resources.blockIO.weight: no blkio.weight or blkio.bfq.weight in {dir} (no proportional I/O scheduler)");
            _fs.Write($"{dir}/{file}", weight.ToString(CultureInfo.InvariantCulture));
        }
        if (r.BlkioWeightDevices.Count > 0)
        {
            var dir = Require("blkio", "linux.resources.blockIO.weightDevice");
            var file = _fs.Exists($"{dir}/blkio.weight_device") ? "blkio.weight_device"
                : _fs.Exists($"{dir}/blkio.bfq.weight_device") ? "blkio.bfq.weight_device"
                : throw new CgroupException($"linux.resources.blockIO.weightDevice: no blkio.weight_device or blkio.bfq.weight_device in {dir} (no proportional I/O scheduler)");
            // One device a write; BFQ refuses (EOPNOTSUPP) a device it does not schedule.
            foreach (var w in r.BlkioWeightDevices)
                _fs.Write($"{dir}/{file}", $"{w.Major}:{w.Minor} {w.Weight}");
        }
        ApplyDevices(r.Devices);
        Throttle("blkio.throttle.read_bps_device", r.BlkioThrottleReadBps, "linux.resources.blockIO.throttleReadBpsDevice");
        Throttle("blkio.throttle.write_bps_device", r.BlkioThrottleWriteBps, "linux.resources.blockIO.throttleWriteBpsDevice");
        Throttle("blkio.throttle.read_iops_device", r.BlkioThrottleReadIops, "linux.resources.blockIO.throttleReadIOPSDevice");
        Throttle("blkio.throttle.write_iops_device", r.BlkioThrottleWriteIops, "linux.resources.blockIO.throttleWriteIOPSDevice");

        // The kubelet sends a limit for every page size the node has, so a node without a v1
        // hugetlb hierarchy skips them (the hybrid manager applies them on v2 instead).
        if (Dir("hugetlb") is { } hugetlb)
        {
            foreach (var (size, limit) in r.HugepageLimits)
            {
                var file = $"{hugetlb}/hugetlb.{size}.limit_in_bytes";
                if (!_fs.Exists(file)) throw new CgroupException($"linux.resources.hugepageLimits: page size {size} not supported ({file} missing)");
                _fs.Write(file, limit.ToString(CultureInfo.InvariantCulture));
            }
        }
    }

    private void ApplyMemory(CgroupResources r)
    {
        if (r.MemoryLimit is null && r.MemorySwap is null) return;
        var dir = Require("memory", "linux.resources.memory");
        var memsw = $"{dir}/memory.memsw.limit_in_bytes";
        // memory.memsw.* exists only with swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1);
        // without it there is no swap limit to set.
        // Lifting the memory limit alone would leave memsw below it, which the kernel refuses:
        // unlimited memory means unlimited memory+swap (runc does the same).
        var requested = r.MemorySwap ?? (r.MemoryLimit == -1 ? -1 : null);
        var swap = requested is { } s && _fs.Exists(memsw) ? s : (long?)null;
        var limit = r.MemoryLimit;

        // The kernel keeps limit <= memsw at every step, so the order depends on the direction:
        // raising memsw (or lifting it) goes first, lowering it goes after the limit.
        var swapFirst = swap is { } newSwap && (newSwap == -1 || (ulong)newSwap > CgroupFiles.ParseValue(_fs.Read(memsw)));
        if (swap is { } first && swapFirst) _fs.Write(memsw, first.ToString(CultureInfo.InvariantCulture));
        if (limit is { } l) _fs.Write($"{dir}/memory.limit_in_bytes", l.ToString(CultureInfo.InvariantCulture));
        if (swap is { } last && !swapFirst) _fs.Write(memsw, last.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>One rule per write to devices.allow or devices.deny, in order (the first is
    /// normally "deny all", then the allowed devices).</summary>
    private void ApplyDevices(IReadOnlyList<DeviceRule> rules)
    {
        if (rules.Count == 0) return;
        var dir = Require("devices", "linux.resources.devices");
        foreach (var rule in rules) _fs.Write($"{dir}/{(rule.Allow ? "devices.allow" : "devices.deny")}", rule.ToString());
    }

    private void Throttle(string file, IReadOnlyList<BlkioThrottle> devices, string field)
    {
        if (devices.Count == 0) return;
        var dir = Require("blkio", field);
        // One device per write: the kernel parses a single "major:minor rate" each time.
        foreach (var d in devices) _fs.Write($"{dir}/{file}", $"{d.Major}:{d.Minor} {d.Rate}");
    }

    private string Require(string controller, string field) =>
        Dir(controller) ?? throw new CgroupException($"{field}: the {controller} cgroup controller is not mounted");

    private void Write(string controller, string file, string value, string field) =>
        _fs.Write($"{Require(controller, field)}/{file}", value);

    public void AddProcess(int pid)
    {
        var value = pid.ToString(CultureInfo.InvariantCulture);
        foreach (var dir in Dirs) _fs.Write($"{dir}/cgroup.procs", value);
    }

    /// <summary>Every pid in the cgroup or its sub-cgroups, in any hierarchy (a process can have
    /// been moved in one hierarchy and not another).</summary>
    public IReadOnlyList<int> Processes() =>
        [.. Dirs.SelectMany(d => CgroupTeardown.ProcessesBelow(_fs, d)).Distinct().Order()];

    public CgroupStats Stats()
    {
        var stats = new CgroupStats { Timestamp = DateTimeOffset.UtcNow };
        if (Dir("cpuacct") is { } acct)
        {
            ulong user, system;
            if (_fs.Exists($"{acct}/cpuacct.usage_user"))
            {
                user = Value(acct, "cpuacct.usage_user");
                system = Value(acct, "cpuacct.usage_sys");
            }
            else
            {
                // cpuacct.stat counts USER_HZ ticks, 100 per second on every Linux ABI.
                var ticks = CgroupFiles.ParseFlatKeyed(_fs.Read($"{acct}/cpuacct.stat"));
                user = ticks.Get("user") * 10_000_000;
                system = ticks.Get("system") * 10_000_000;
            }
            stats = stats with { CpuUsageNanos = Value(acct, "cpuacct.usage"), CpuUserNanos = user, CpuSystemNanos = system };
        }
        if (Dir("cpu") is { } cpu)
        {
            var cpuStat = CgroupFiles.ParseFlatKeyed(_fs.Read($"{cpu}/cpu.stat"));
            stats = stats with { CpuPeriods = cpuStat.Get("nr_periods"), CpuThrottledPeriods = cpuStat.Get("nr_throttled"), CpuThrottledNanos = cpuStat.Get("throttled_time") };
        }
        if (Dir("memory") is { } mem)
        {
            var usage = Value(mem, "memory.usage_in_bytes");
            var memStat = CgroupFiles.ParseFlatKeyed(_fs.Read($"{mem}/memory.stat"));
            var inactiveFile = memStat.Get("total_inactive_file");
            var swap = _fs.Exists($"{mem}/memory.memsw.usage_in_bytes") ? Value(mem, "memory.memsw.usage_in_bytes") : 0;
            stats = stats with
            {
                MemoryUsageBytes = usage,
                MemoryWorkingSetBytes = usage > inactiveFile ? usage - inactiveFile : 0,
                MemoryRssBytes = memStat.Get("total_rss"),
                MemoryCacheBytes = memStat.Get("total_cache"),
                SwapUsageBytes = swap > usage ? swap - usage : 0,
                MemoryLimitBytes = Unlimited(Value(mem, "memory.limit_in_bytes")),
                OomKills = CgroupFiles.ParseFlatKeyed(_fs.Read($"{mem}/memory.oom_control")).Get("oom_kill"),
            };
        }
        if (Dir("pids") is { } pids)
            stats = stats with { PidsCurrent = Value(pids, "pids.current"), PidsLimit = Value(pids, "pids.max") };
        return stats;
    }

    // v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 on 4 KiB
    // pages); report it as v2's "max" does, ulong.MaxValue, whatever the page size.
    private static ulong Unlimited(ulong v) => v >= long.MaxValue / 2 ? ulong.MaxValue : v;

    private ulong Value(string dir, string file) => CgroupFiles.ParseValue(_fs.Read($"{dir}/{file}"));

    public void Freeze()
    {
        var dir = Require("freezer", "freeze");
        _fs.Write($"{dir}/freezer.state", "FROZEN");
        // v1 freezer raises no event. A task that was in a non-freezable state when we asked stays
        // FREEZING until asked again, so the wait re-requests FROZEN on each re-read.
        var frozen = KernelWait.Until(() =>
        {
            if (State(dir) == "FROZEN") return true;
            _fs.Write($"{dir}/freezer.state", "FROZEN");
            return false;
        }, FreezeTimeout);
        if (frozen) return;
        _fs.Write($"{dir}/freezer.state", "THAWED");
        throw new CgroupException($"freeze {dir}: still {State(dir)} after {FreezeTimeout.TotalSeconds} s; thawed again");
    }

    public void Thaw()
    {
        var dir = Require("freezer", "thaw");
        _fs.Write($"{dir}/freezer.state", "THAWED");
        // A cgroup removed meanwhile (its tasks died once thawed, and their owner removed it) has
        // nothing frozen left.
        if (!KernelWait.Until(() => _fs.Read($"{dir}/freezer.state") is not { } s || s.Trim() == "THAWED", FreezeTimeout))
            throw new CgroupException($"thaw {dir}: still {State(dir)} after {FreezeTimeout.TotalSeconds} s");
    }

    private string State(string dir) => (_fs.Read($"{dir}/freezer.state") ?? "").Trim();

    public void KillAll()
    {
        var canFreeze = Dir("freezer") is { } f && _fs.Exists(f);
        CgroupTeardown.KillLoop(Path, Processes, canFreeze ? Freeze : null, canFreeze ? Thaw : null);
    }

    public void Destroy()
    {
        // Usually its shim removed it already (RemoveContainer after an exit): one stat per
        // hierarchy then, rather than a missing cgroup.procs and directory listing each.
        var left = ExistingDirs();
        if (left.Count == 0) return;
        if (Processes().Count > 0) KillAll();
        foreach (var dir in left) CgroupTeardown.RemoveTree(_fs, dir);
    }

    /// <summary>Its directories that exist: one stat per hierarchy.</summary>
    internal List<string> ExistingDirs() => [.. Dirs.Where(_fs.Exists)];

    public bool OomKilled() =>
        Dir("memory") is { } mem && CgroupFiles.ParseFlatKeyed(_fs.Read($"{mem}/memory.oom_control")).Get("oom_kill") > 0;
}
