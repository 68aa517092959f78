using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

/// <summary>V2Manager against a temp tree laid out like a cgroup2 root whose owner (systemd, the
/// kubelet) hands down cpu, io, memory and pids but not cpuset or hugetlb.</summary>
public sealed class V2ManagerTests : IDisposable
{
    private readonly TempCgroupFs _fs = new();
    private const string RootSubtree = "cpu io memory pids";

    public V2ManagerTests()
    {
        foreach (var (file, content) in new (string, string)[]
        {
            ("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc"), ("cgroup.subtree_control", RootSubtree),
            ("cgroup.procs", ""), ("cgroup.events", "populated 0\nfrozen 0\n"), ("cgroup.freeze", "0"), ("cgroup.kill", ""),
            ("cpu.weight", "100"), ("cpu.max", "max 100000"),
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 9\nnr_throttled 2\nthrottled_usec 70\n"),
            ("cpuset.cpus", ""), ("cpuset.mems", ""),
            ("memory.max", "max"), ("memory.low", "0"), ("memory.swap.max", "max"), ("memory.current", "8192"),
            ("memory.swap.current", "512"), ("memory.stat", "anon 4096\nfile 2048\ninactive_file 1024\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"), ("memory.high", "max"),
            ("pids.max", "max"), ("pids.current", "2"), ("io.weight", "default 100"), ("io.max", ""),
            ("hugetlb.2MB.max", "max"),
        })
        {
            _fs.Seed($"unified/{file}", content);
        }
    }

    public void Dispose() => _fs.Dispose();

    private V2Manager Manager(string path = "pod/ctr") => new(path, _fs.Abs("unified"), _fs);

    private string Text(string file) => _fs.Text($"unified/pod/ctr/{file}");

    [Fact]
    public void V2_CpuQuota_WritesCpuMaxAsQuotaAndPeriod()
    {
        Manager().Create(new CgroupResources { CpuQuota = 50000, CpuPeriod = 100000 });

        Assert.Equal("50000 100000", Text("cpu.max"));
        Assert.Single(_fs.WritesTo("cpu.max")); // one write, never quota and period apart
    }

    [Fact]
    public void V2_CpuQuotaUnlimited_WritesMaxAndKeepsThePeriod()
    {
        Manager().Create(new CgroupResources { CpuQuota = -1 });

        Assert.Equal(["max"], _fs.WritesTo("cpu.max"));
    }

    [Fact]
    public void V2_CpuPeriodAlone_RestatesTheCurrentQuota()
    {
        var m = Manager();
        m.Create(new CgroupResources { CpuQuota = 20000 });
        _fs.Seed("unified/pod/ctr/cpu.max", "20000 100000\n");

        m.Update(new CgroupResources { CpuPeriod = 50000 });

        Assert.Equal("20000 50000", Text("cpu.max"));
    }

    [Theory]
    [InlineData(2UL, "1")]
    [InlineData(1024UL, "39")]
    [InlineData(262144UL, "10000")]
    public void V2_CpuShares_AreConvertedToCpuWeight(ulong shares, string weight)
    {
        Manager().Create(new CgroupResources { CpuShares = shares });

        Assert.Equal(weight, Text("cpu.weight"));
    }

    [Fact]
    public void V2_Create_EnablesAvailableControllersOnlyInIntermediateCgroupsItCreated()
    {
        Manager("a/b/ctr").Create(new CgroupResources());

        // The root belongs to someone else: never written, whatever it lacks.
        Assert.Equal(RootSubtree, _fs.Text("unified/cgroup.subtree_control"));
        Assert.DoesNotContain(_fs.Writes, w => w.File == "unified/cgroup.subtree_control");
        // Ours: what the root hands down, in one write.
        Assert.Equal(["+cpu +io +memory +pids", "+cpu +io +memory +pids"], _fs.WritesTo("cgroup.subtree_control"));
        Assert.Equal("cpu io memory pids", _fs.Text("unified/a/b/cgroup.subtree_control"));
        Assert.Equal("cpu io memory pids", _fs.Text("unified/a/b/ctr/cgroup.controllers"));
        // The leaf holds processes, so it hands nothing down.
        Assert.Equal("", _fs.Text("unified/a/b/ctr/cgroup.subtree_control"));
    }

    [Fact]
    public void V2_Create_LeavesExistingParentsAlone()
    {
        Directory.CreateDirectory(_fs.Abs("unified/pod"));
        _fs.Seed("unified/pod/cgroup.controllers", "cpu memory");
        _fs.Seed("unified/pod/cgroup.subtree_control", "memory");
        _fs.Seed("unified/pod/memory.max", "max");
        _fs.Seed("unified/pod/cgroup.procs");

        Manager().Create(new CgroupResources());

        Assert.Empty(_fs.WritesTo("cgroup.subtree_control"));
        Assert.Equal("memory", _fs.Text("unified/pod/cgroup.subtree_control"));
        Assert.True(File.Exists(_fs.Abs("unified/pod/ctr/memory.max")));
        Assert.False(File.Exists(_fs.Abs("unified/pod/ctr/cpu.max")));
    }

    [Fact]
    public void V2_MissingController_FailsNamingTheFieldAndFile()
    {
        // cpuset is available at the root but not handed down.
        var e = Assert.Throws<CgroupException>(() => Manager().Create(new CgroupResources { CpusetCpus = "0" }));

        Assert.StartsWith("linux.resources.cpu.cpus: the cpuset controller is not enabled for", e.Message);
        Assert.EndsWith("(cpuset.cpus missing)", e.Message);
    }

    [Fact]
    public void V2_Memory_WritesMaxLowAndSwapMaxAsSwapMinusLimit()
    {
        Manager().Create(new CgroupResources { MemoryLimit = 256 << 20, MemoryReservation = 64 << 20, MemorySwap = 384 << 20 });

        Assert.Equal((256 << 20).ToString(), Text("memory.max"));
        Assert.Equal((64 << 20).ToString(), Text("memory.low"));
        Assert.Equal((128 << 20).ToString(), Text("memory.swap.max"));
    }

    [Fact]
    public void V2_MemoryUnlimited_WritesMax()
    {
        var m = Manager();
        m.Create(new CgroupResources { MemoryLimit = 1 << 20 });

        m.Update(new CgroupResources { MemoryLimit = -1, MemorySwap = -1 });

        Assert.Equal("max", Text("memory.max"));
        Assert.Equal("max", Text("memory.swap.max"));
    }

    [Fact]
    public void V2_BlkioWeightDevices_AreConvertedToIoWeightLines()
    {
        Manager().Create(new CgroupResources { BlkioWeightDevices = [new(8, 0, 500)] });

        Assert.Equal(["8:0 4950"], _fs.WritesTo("io.weight"));
    }

    [Fact]
    public void V2_PidsAndIo_WritePidsMaxIoWeightAndIoMax()
    {
        Manager().Create(new CgroupResources
        {
            PidsLimit = 64,
            BlkioWeight = 500,
            BlkioThrottleReadBps = [new(8, 0, 1000)],
            BlkioThrottleWriteIops = [new(8, 16, 20)],
        });

        Assert.Equal("64", Text("pids.max"));
        Assert.Equal("default 4950", Text("io.weight")); // 1 + (500-10)*9999/990
        Assert.Equal(["8:0 rbps=1000", "8:16 wiops=20"], _fs.WritesTo("io.max"));
    }

    [Fact]
    public void V2_Hugetlb_WritesMaxAndSkipsSizesWithoutAFile()
    {
        _fs.Seed("unified/cgroup.subtree_control", RootSubtree + " hugetlb");

        Manager().Create(new CgroupResources { HugepageLimits = new Dictionary<string, ulong> { ["2MB"] = 2 << 21, ["1GB"] = 0 } });

        Assert.Equal((2 << 21).ToString(), Text("hugetlb.2MB.max"));
        Assert.Single(_fs.WritesTo("hugetlb.2MB.max"));
        Assert.False(File.Exists(_fs.Abs("unified/pod/ctr/hugetlb.1GB.max")));
    }

    [Fact]
    public void V2_Unified_WritesRawKeysAfterTypedFields()
    {
        Manager().Create(new CgroupResources
        {
            MemoryLimit = 1 << 20,
            Unified = new Dictionary<string, string> { ["memory.high"] = "524288", ["memory.max"] = "2097152" },
        });

        Assert.Equal("524288", Text("memory.high"));
        Assert.Equal("2097152", Text("memory.max"));
    }

    [Fact]
    public void V2_Unified_UnknownFileFailsNamingTheKey()
    {
        var e = Assert.Throws<CgroupException>(() =>
            Manager().Create(new CgroupResources { Unified = new Dictionary<string, string> { ["cpuset.cpus"] = "0" } }));

        Assert.StartsWith("linux.resources.unified[cpuset.cpus]", e.Message);
    }

    [Fact]
    public void V2_Stats_ReadsCpuStatMemoryEventsAndPids()
    {
        var m = Manager();
        m.Create(new CgroupResources { PidsLimit = 10 });

        var s = m.Stats();

        Assert.Equal(1_500_000UL, s.CpuUsageNanos);
        Assert.Equal(1_000_000UL, s.CpuUserNanos);
        Assert.Equal(500_000UL, s.CpuSystemNanos);
        Assert.Equal(2UL, s.CpuThrottledPeriods);
        Assert.Equal(70_000UL, s.CpuThrottledNanos);
        Assert.Equal(8192UL, s.MemoryUsageBytes);
        Assert.Equal(7168UL, s.MemoryWorkingSetBytes);
        Assert.Equal(4096UL, s.MemoryRssBytes);
        Assert.Equal(2048UL, s.MemoryCacheBytes);
        Assert.Equal(512UL, s.SwapUsageBytes);
        Assert.Equal(ulong.MaxValue, s.MemoryLimitBytes);
        Assert.Equal(1UL, s.OomKills);
        Assert.True(m.OomKilled());
        Assert.Equal(2UL, s.PidsCurrent);
        Assert.Equal(10UL, s.PidsLimit);
    }

    [Fact]
    public void V2_Freeze_WritesCgroupFreezeAndWaitsForFrozenEvent()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        // The temp tree has no kernel to flip cgroup.events: pretend it already did.
        _fs.Seed("unified/pod/ctr/cgroup.events", "populated 0\nfrozen 1\n");

        m.Freeze();

        Assert.Equal("1", Text("cgroup.freeze"));
    }

    [Fact]
    public void V2_Freeze_TimesOutWithAMessageAndThawsAgain()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        var e = Assert.Throws<CgroupException>(m.Freeze);

        Assert.Contains("did not report frozen 1", e.Message);
        Assert.Equal(["1", "0"], _fs.WritesTo("cgroup.freeze"));
    }

    [Fact]
    public void V2_Destroy_IsIdempotent()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.Destroy();
        m.Destroy();

        Assert.False(Directory.Exists(_fs.Abs("unified/pod/ctr")));
    }
}
