using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

/// <summary>V1Manager against a temp tree laid out like a v1 node with co-mounted cpu,cpuacct.</summary>
public sealed class V1ManagerTests : IDisposable
{
    private const string Unlimited = "9223372036854771712";
    private readonly TempCgroupFs _fs = new();
    private readonly CgroupLayout _layout;

    public V1ManagerTests()
    {
        string[] hierarchies = ["cpu,cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "hugetlb", "devices"];
        var mountinfo = string.Join('\n', hierarchies.Select((h, i) =>
            $"{30 + i} 25 0:{30 + i} / {_fs.Abs(h)} rw,relatime - cgroup cgroup rw,{h}"));
        _layout = CgroupLayout.Parse(mountinfo);
        foreach (var h in hierarchies) _fs.Seed($"{h}/cgroup.procs");
        Seed("cpu,cpuacct", ("cpu.shares", "1024"), ("cpu.cfs_quota_us", "-1"), ("cpu.cfs_period_us", "100000"),
            ("cpu.stat", "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\n"),
            ("cpuacct.usage", "5000000"), ("cpuacct.usage_user", "3000000"), ("cpuacct.usage_sys", "2000000"));
        Seed("cpuset", ("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n"));
        Seed("memory", ("memory.limit_in_bytes", Unlimited), ("memory.memsw.limit_in_bytes", Unlimited),
            ("memory.soft_limit_in_bytes", Unlimited), ("memory.swappiness", "60"),
            ("memory.usage_in_bytes", "10000"), ("memory.memsw.usage_in_bytes", "12000"),
            ("memory.stat", "cache 1\nrss 2\ntotal_cache 4000\ntotal_rss 5000\ntotal_inactive_file 3000\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"));
        Seed("pids", ("pids.max", "max"), ("pids.current", "0"));
        Seed("blkio", ("blkio.bfq.weight", "100"), ("blkio.throttle.read_bps_device", ""), ("blkio.throttle.write_iops_device", ""));
        Seed("freezer", ("freezer.state", "THAWED"));
        Seed("hugetlb", ("hugetlb.2MB.limit_in_bytes", Unlimited));
        Seed("devices", ("devices.allow", ""), ("devices.deny", ""), ("devices.list", "a *:* rwm\n"));
    }

    private void Seed(string hierarchy, params (string File, string Content)[] files)
    {
        foreach (var (file, content) in files) _fs.Seed($"{hierarchy}/{file}", content);
    }

    public void Dispose() => _fs.Dispose();

    private V1Manager Manager(string path = "pod/ctr") => new(path, _layout, _fs);

    [Fact]
    public void V1_Devices_WriteEachRuleInOrder_OnePerWrite()
    {
        var m = Manager();

        m.Create(new CgroupResources
        {
            Devices = [new(false, "a", null, null, "rwm"), new(true, "c", null, null, "m"), new(true, "c", 1, 5, "rw")],
        });

        Assert.Equal(
            [("devices/pod/ctr/devices.deny", "a *:* rwm"), ("devices/pod/ctr/devices.allow", "c *:* m"), ("devices/pod/ctr/devices.allow", "c 1:5 rw")],
            _fs.Writes.Where(w => w.File.StartsWith("devices/", StringComparison.Ordinal)));
    }

    [Fact]
    public void V1_NoDeviceRules_LeaveTheDeviceCgroupAlone()
    {
        Manager().Create(new CgroupResources());
        Assert.DoesNotContain(_fs.Writes, w => w.File.StartsWith("devices/", StringComparison.Ordinal));
    }

    [Fact]
    public void V1_Create_MakesTheCgroupOnceInEveryHierarchy()
    {
        Manager().Create(new CgroupResources());

        foreach (var h in new[] { "cpu,cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "hugetlb", "devices" })
            Assert.True(Directory.Exists(_fs.Abs($"{h}/pod/ctr")), h);
        Assert.False(Directory.Exists(_fs.Abs("cpu/pod")));
    }

    [Fact]
    public void V1_CpuQuota_WritesPeriodBeforeQuota()
    {
        Manager().Create(new CgroupResources { CpuQuota = 50000, CpuPeriod = 200000, CpuShares = 512 });

        Assert.Equal("50000", _fs.Text("cpu,cpuacct/pod/ctr/cpu.cfs_quota_us"));
        Assert.Equal("200000", _fs.Text("cpu,cpuacct/pod/ctr/cpu.cfs_period_us"));
        Assert.Equal("512", _fs.Text("cpu,cpuacct/pod/ctr/cpu.shares"));
        var order = _fs.Writes.Select(w => Path.GetFileName(w.File)).Where(f => f.StartsWith("cpu.cfs")).ToList();
        Assert.Equal(["cpu.cfs_period_us", "cpu.cfs_quota_us"], order);
    }

    [Fact]
    public void V1_Cpuset_NewCgroupsInheritParentCpusAndMems_IncludingIntermediates()
    {
        Manager().Create(new CgroupResources());

        AssertPodAndContainerHaveTheRootsCpuset();
    }

    private void AssertPodAndContainerHaveTheRootsCpuset()
    {
        foreach (var dir in new[] { "cpuset/pod", "cpuset/pod/ctr" })
        {
            Assert.Equal("0-1", _fs.Text($"{dir}/cpuset.cpus"));
            Assert.Equal("0", _fs.Text($"{dir}/cpuset.mems"));
        }
    }

    /// <summary>Two creates racing for a parent (two pods' first containers under a new cgroup
    /// root): the one that did not make it may find it still empty (its maker has not written
    /// cpus and mems yet). It fills it in as the maker would, rather than give its own cgroup the
    /// empty set, which the kernel refuses tasks with (ENOSPC: seen at 300 pods). As runc does.</summary>
    [Fact]
    public void V1_Cpuset_AParentMadeByAnotherCreatorButStillEmpty_IsFilledInToo()
    {
        _fs.Seed("cpuset/pod/cpuset.cpus");
        _fs.Seed("cpuset/pod/cpuset.mems");
        _fs.Seed("cpuset/pod/cgroup.procs");

        Manager().Create(new CgroupResources());

        AssertPodAndContainerHaveTheRootsCpuset();
    }

    /// <summary>A parent that has its cpus (another's, set as it chose) is read, never written.</summary>
    [Fact]
    public void V1_Cpuset_AParentWithItsOwnCpus_IsLeftAsItIs()
    {
        _fs.Seed("cpuset/pod/cpuset.cpus", "1\n");
        _fs.Seed("cpuset/pod/cpuset.mems", "0\n");
        _fs.Seed("cpuset/pod/cgroup.procs");

        Manager().Create(new CgroupResources());

        Assert.DoesNotContain(_fs.Writes, w => w.File.StartsWith("cpuset/pod/cpuset.", StringComparison.Ordinal));
        Assert.Equal("1", _fs.Text("cpuset/pod/ctr/cpuset.cpus"));
    }

    [Fact]
    public void V1_Cpuset_ExplicitCpusOverrideTheInheritedOnes()
    {
        Manager().Create(new CgroupResources { CpusetCpus = "1", CpusetMems = "0" });

        Assert.Equal("1", _fs.Text("cpuset/pod/ctr/cpuset.cpus"));
        Assert.Equal("0-1", _fs.Text("cpuset/pod/cpuset.cpus"));
    }

    [Fact]
    public void V1_Memory_LoweringSwapWritesLimitBeforeMemsw()
    {
        Manager().Create(new CgroupResources { MemoryLimit = 256 << 20, MemorySwap = 512 << 20, MemoryReservation = 128 << 20, MemorySwappiness = 0 });

        Assert.Equal((256 << 20).ToString(), _fs.Text("memory/pod/ctr/memory.limit_in_bytes"));
        Assert.Equal((512 << 20).ToString(), _fs.Text("memory/pod/ctr/memory.memsw.limit_in_bytes"));
        Assert.Equal((128 << 20).ToString(), _fs.Text("memory/pod/ctr/memory.soft_limit_in_bytes"));
        Assert.Equal("0", _fs.Text("memory/pod/ctr/memory.swappiness"));
        var order = _fs.Writes.Select(w => Path.GetFileName(w.File)).Where(f => f.Contains("limit_in_bytes") && !f.Contains("soft")).ToList();
        Assert.Equal(["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"], order);
    }

    [Fact]
    public void V1_Memory_RaisingSwapWritesMemswBeforeLimit()
    {
        var m = Manager();
        m.Create(new CgroupResources { MemoryLimit = 64 << 20, MemorySwap = 128 << 20 });
        _fs.Writes.Clear();

        m.Update(new CgroupResources { MemoryLimit = 256 << 20, MemorySwap = 512 << 20 });

        Assert.Equal(["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"], _fs.Writes.Select(w => Path.GetFileName(w.File)));
        Assert.Equal((512 << 20).ToString(), _fs.Text("memory/pod/ctr/memory.memsw.limit_in_bytes"));
    }

    [Fact]
    public void V1_MemorySwap_IsSkippedWithoutSwapAccounting()
    {
        File.Delete(_fs.Abs("memory/memory.memsw.limit_in_bytes"));

        Manager().Create(new CgroupResources { MemoryLimit = 64 << 20, MemorySwap = 128 << 20 });

        Assert.Equal((64 << 20).ToString(), _fs.Text("memory/pod/ctr/memory.limit_in_bytes"));
        Assert.Empty(_fs.WritesTo("memory.memsw.limit_in_bytes"));
    }

    [Theory]
    [InlineData(-1, "max")]
    [InlineData(0, "max")]
    [InlineData(100, "100")]
    public void V1_PidsLimit_WritesPidsMax(long limit, string expected)
    {
        Manager().Create(new CgroupResources { PidsLimit = limit });

        Assert.Equal(expected, _fs.Text("pids/pod/ctr/pids.max"));
    }

    [Fact]
    public void V1_BlkioWeight_UsesBfqWeightWhenBlkioWeightIsMissing()
    {
        Manager().Create(new CgroupResources { BlkioWeight = 300 });

        Assert.Equal("300", _fs.Text("blkio/pod/ctr/blkio.bfq.weight"));
    }

    [Fact]
    public void V1_BlkioWeightDevices_GoToBfqWeightDevice_OneDevicePerWrite()
    {
        Seed("blkio", ("blkio.bfq.weight_device", ""));

        Manager().Create(new CgroupResources { BlkioWeightDevices = [new(254, 0, 50), new(7, 3, 800)] });

        Assert.Equal(["254:0 50", "7:3 800"], _fs.WritesTo("blkio.bfq.weight_device"));
    }

    [Fact]
    public void V1_BlkioWeightDevices_WithoutAProportionalScheduler_AreRefusedNamingTheField()
    {
        var e = Assert.Throws<CgroupException>(() => Manager().Create(new CgroupResources { BlkioWeightDevices = [new(254, 0, 50)] }));

        Assert.Contains("blockIO.weightDevice", e.Message);
    }

    [Fact]
    public void V1_BlkioThrottle_WritesOneDevicePerWrite()
    {
        Manager().Create(new CgroupResources
        {
            BlkioThrottleReadBps = [new(8, 0, 1048576), new(8, 16, 2097152)],
            BlkioThrottleWriteIops = [new(8, 0, 100)],
        });

        Assert.Equal(["8:0 1048576", "8:16 2097152"], _fs.WritesTo("blkio.throttle.read_bps_device"));
        Assert.Equal(["8:0 100"], _fs.WritesTo("blkio.throttle.write_iops_device"));
    }

    [Fact]
    public void V1_Hugetlb_WritesLimitInBytes()
    {
        Manager().Create(new CgroupResources { HugepageLimits = new Dictionary<string, ulong> { ["2MB"] = 4 << 21 } });

        Assert.Equal((4 << 21).ToString(), _fs.Text("hugetlb/pod/ctr/hugetlb.2MB.limit_in_bytes"));
    }

    [Fact]
    public void V1_Unified_IsRefusedNamingTheField()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            Manager().Create(new CgroupResources { Unified = new Dictionary<string, string> { ["memory.high"] = "1" } }));

        Assert.StartsWith("linux.resources.unified", e.Message);
        Assert.False(Directory.Exists(_fs.Abs("memory/pod")));
    }

    [Fact]
    public void V1_AddProcess_WritesThePidToEveryHierarchy()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.AddProcess(4242);

        Assert.Equal(8, _fs.WritesTo("cgroup.procs").Count(v => v == "4242"));
        Assert.Equal([4242], m.Processes());
    }

    [Fact]
    public void V1_Stats_ReadsCpuacctMemoryPidsAndWorkingSet()
    {
        var m = Manager();
        m.Create(new CgroupResources { PidsLimit = 50, MemoryLimit = 1 << 20 });
        _fs.Seed("pids/pod/ctr/pids.current", "3\n");
        _fs.Seed("memory/pod/ctr/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");

        var s = m.Stats();

        Assert.Equal(5000000UL, s.CpuUsageNanos);
        Assert.Equal(3000000UL, s.CpuUserNanos);
        Assert.Equal(2000000UL, s.CpuSystemNanos);
        Assert.Equal(4UL, s.CpuThrottledPeriods);
        Assert.Equal(123456UL, s.CpuThrottledNanos);
        Assert.Equal(10000UL, s.MemoryUsageBytes);
        Assert.Equal(7000UL, s.MemoryWorkingSetBytes); // usage - total_inactive_file
        Assert.Equal(5000UL, s.MemoryRssBytes);
        Assert.Equal(4000UL, s.MemoryCacheBytes);
        Assert.Equal(2000UL, s.SwapUsageBytes); // memsw.usage - usage
        Assert.Equal(1UL << 20, s.MemoryLimitBytes);
        Assert.Equal(2UL, s.OomKills);
        Assert.True(m.OomKilled());
        Assert.Equal(3UL, s.PidsCurrent);
        Assert.Equal(50UL, s.PidsLimit);
    }

    [Fact]
    public void V1_Stats_FallsBackToCpuacctStatTicks()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        File.Delete(_fs.Abs("cpu,cpuacct/pod/ctr/cpuacct.usage_user"));
        _fs.Seed("cpu,cpuacct/pod/ctr/cpuacct.stat", "user 7\nsystem 3\n");

        var s = m.Stats();

        Assert.Equal(70_000_000UL, s.CpuUserNanos);
        Assert.Equal(30_000_000UL, s.CpuSystemNanos);
    }

    [Fact]
    public void V1_FreezeAndThaw_WriteFreezerState()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.Freeze();
        Assert.Equal("FROZEN", _fs.Text("freezer/pod/ctr/freezer.state"));
        m.Thaw();
        Assert.Equal("THAWED", _fs.Text("freezer/pod/ctr/freezer.state"));
    }

    /// <summary>The kernel after the last task of a thawed cgroup died: its shim removed the cgroup
    /// (what a migration's Commit meets: SIGKILL while frozen, thaw, the tasks die at once).</summary>
    private sealed class GoneAfterThaw(TempCgroupFs fs) : ICgroupFs
    {
        public void Write(string file, string value)
        {
            fs.Write(file, value);
            if (value == "THAWED") Directory.Delete(Path.GetDirectoryName(file)!, recursive: true);
        }

        public string? Read(string file) => fs.Read(file);
        public bool Mkdir(string dir) => fs.Mkdir(dir);
        public bool Rmdir(string dir) => fs.Rmdir(dir);
        public bool Exists(string path) => fs.Exists(path);
        public IReadOnlyList<string> ListDirectories(string dir) => fs.ListDirectories(dir);
    }

    [Fact]
    public void V1_Thaw_OfACgroupRemovedRightAfter_IsDone_NotAFiveSecondWaitAndAnError()
    {
        Manager().Create(new CgroupResources());
        var m = new V1Manager("pod/ctr", _layout, new GoneAfterThaw(_fs));
        m.Freeze();

        var took = System.Diagnostics.Stopwatch.StartNew();
        m.Thaw();

        Assert.True(took.Elapsed < TimeSpan.FromSeconds(2), $"{took.Elapsed}");
    }

    [Fact]
    public void V1_Destroy_RemovesOnlyTheLeafAndIsIdempotent()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.Destroy();
        m.Destroy();

        Assert.False(Directory.Exists(_fs.Abs("memory/pod/ctr")));
        Assert.True(Directory.Exists(_fs.Abs("memory/pod")));
    }

    /// <summary>RemoveContainer destroys the cgroup its shim has usually removed already: that is
    /// then a stat per hierarchy, not a failed read of cgroup.procs and listing in each.</summary>
    [Fact]
    public void V1_DestroyOfACgroupAlreadyGone_LooksUpNothingInside()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        m.Destroy();
        var before = _fs.MissingLookups;

        m.Destroy();

        Assert.Equal(before, _fs.MissingLookups);
    }

    [Fact]
    public void V1_MissingController_FailsNamingTheFieldAndController()
    {
        var layout = CgroupLayout.Parse($"31 25 0:31 / {_fs.Abs("memory")} rw - cgroup cgroup rw,memory");
        var m = new V1Manager("ctr", layout, _fs);

        var e = Assert.Throws<CgroupException>(() => m.Create(new CgroupResources { PidsLimit = 10 }));

        Assert.Equal("linux.resources.pids.limit: the pids cgroup controller is not mounted", e.Message);
    }

    [Fact]
    public void V1_MemoryUnlimited_AlsoLiftsMemswFirst()
    {
        var m = Manager();
        m.Create(new CgroupResources { MemoryLimit = 64 << 20, MemorySwap = 64 << 20 });
        _fs.Writes.Clear();

        m.Update(new CgroupResources { MemoryLimit = -1 });

        Assert.Equal([("memory/pod/ctr/memory.memsw.limit_in_bytes", "-1"), ("memory/pod/ctr/memory.limit_in_bytes", "-1")], _fs.Writes);
    }

    [Fact]
    public void V1_Stats_ReportsNoMemoryLimitAsMaxValue()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        Assert.Equal(ulong.MaxValue, m.Stats().MemoryLimitBytes);
    }

    [Fact]
    public void V1_ProcessesAndDestroy_CoverSubCgroupsTheContainerMade()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        _fs.Mkdir(_fs.Abs("memory/pod/ctr/inner"));
        _fs.Seed("memory/pod/ctr/inner/cgroup.procs", "77\n");

        Assert.Equal([77], m.Processes());
        _fs.Seed("memory/pod/ctr/inner/cgroup.procs", "");
        m.Destroy();

        Assert.False(Directory.Exists(_fs.Abs("memory/pod/ctr")));
    }
}
