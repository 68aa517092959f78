using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

public class CgroupLayoutTests
{
    // CentOS 7 / RHEL 7 style: co-mounted cpu,cpuacct and net_cls,net_prio, a named systemd hierarchy.
    private const string V1Sample = """
        25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
        29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
        30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
        31 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
        32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
        33 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpuset
        34 25 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
        35 25 0:31 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,blkio
        36 25 0:32 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,hugetlb
        37 25 0:33 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,devices
        """;

    // Debian 12 / Fedora: everything on one cgroup2 mount.
    private const string V2Sample = """
        22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
        26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        """;

    // Ubuntu 20.04 style hybrid: v1 controllers plus cgroup2 at /sys/fs/cgroup/unified.
    private const string HybridSample = """
        30 22 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        31 30 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
        32 30 0:29 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
        35 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
        36 30 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
        37 30 0:34 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
        """;

    [Theory]
    [InlineData(V1Sample)]
    [InlineData(V2Sample)]
    [InlineData(HybridSample)]
    public void MountLines_AreOnlyTheCgroupMounts_AndParseIntoTheSameLayout(string mountinfo)
    {
        // What the daemon hands its shims: a node's mountinfo with a few thousand other mounts.
        var busy = mountinfo + string.Concat(Enumerable.Range(0, 2000).Select(i =>
            $"\n{100 + i} 25 0:{100 + i} / /run/criruntime/pods/p{i}/ns/net rw - nsfs nsfs rw"));
        var layout = CgroupLayout.Parse(busy);

        Assert.DoesNotContain("nsfs", layout.MountLines);
        Assert.DoesNotContain("tmpfs", layout.MountLines);
        var again = CgroupLayout.Parse(layout.MountLines);
        Assert.Equal(layout.Mode, again.Mode);
        Assert.Equal(layout.UnifiedMount, again.UnifiedMount);
        Assert.Equal(layout.V1Mounts.OrderBy(kv => kv.Key), again.V1Mounts.OrderBy(kv => kv.Key));
        Assert.Equal(layout.MountLines, again.MountLines);
    }

    [Fact]
    public void Detect_TakesTheMountsItsParentGave_AndReadsMountinfoWithoutThem()
    {
        var given = CgroupLayout.Detect(name => name == CgroupLayout.MountsVariable ? CgroupLayout.Parse(V1Sample).MountLines : null);
        Assert.Equal(CgroupMode.V1, given.Mode);
        Assert.Equal("/sys/fs/cgroup/cpu,cpuacct", given.V1Mounts["cpuacct"]);

        var own = CgroupLayout.Detect(_ => null);
        Assert.Equal(CgroupLayout.Parse(File.ReadAllText("/proc/self/mountinfo")).MountLines, own.MountLines);
        // Something no daemon writes: the real mountinfo instead.
        Assert.Equal(own.MountLines, CgroupLayout.Detect(_ => "not a mountinfo line").MountLines);
    }

    [Fact]
    public void Parse_V1Sample_IsV1WithCoMountedControllersSharingOneDirectory()
    {
        var layout = CgroupLayout.Parse(V1Sample);

        Assert.Equal(CgroupMode.V1, layout.Mode);
        Assert.Null(layout.UnifiedMount);
        Assert.Equal("/sys/fs/cgroup/cpu,cpuacct", layout.V1Mounts["cpu"]);
        Assert.Equal("/sys/fs/cgroup/cpu,cpuacct", layout.V1Mounts["cpuacct"]);
        Assert.Equal("/sys/fs/cgroup/memory", layout.V1Mounts["memory"]);
        Assert.Equal("/sys/fs/cgroup/hugetlb", layout.V1Mounts["hugetlb"]);
        Assert.DoesNotContain("name=systemd", layout.V1Mounts.Keys);
        Assert.DoesNotContain("xattr", layout.V1Mounts.Keys);
        Assert.Equal(9, layout.V1Hierarchies.Count); // cpu,cpuacct and net_cls,net_prio count once
    }

    [Fact]
    public void Parse_V2Sample_IsV2AtSysFsCgroup()
    {
        var layout = CgroupLayout.Parse(V2Sample);

        Assert.Equal(CgroupMode.V2, layout.Mode);
        Assert.Equal("/sys/fs/cgroup", layout.UnifiedMount);
        Assert.Empty(layout.V1Mounts);
    }

    [Fact]
    public void Parse_HybridSample_IsHybridWithUnifiedMount()
    {
        var layout = CgroupLayout.Parse(HybridSample);

        Assert.Equal(CgroupMode.Hybrid, layout.Mode);
        Assert.Equal("/sys/fs/cgroup/unified", layout.UnifiedMount);
        Assert.Equal(["cpu", "cpuacct", "memory", "pids"], layout.V1Mounts.Keys.Order());
    }

    [Fact]
    public void Parse_ProcCgroups_DecidesWhichOptionsAreControllers()
    {
        // A controller disabled on the kernel command line is not a controller we can use.
        const string procCgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\ncpuacct\t1\t1\t1\nmemory\t2\t1\t0\npids\t3\t1\t1\n";

        var layout = CgroupLayout.Parse(HybridSample, procCgroups);

        Assert.Equal(["cpu", "cpuacct", "pids"], layout.V1Mounts.Keys.Order());
    }

    [Fact]
    public void Parse_SeparateCpuAndCpuacctMounts_AreTwoHierarchies()
    {
        const string sample = """
            31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
            32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
            40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            """;

        var layout = CgroupLayout.Parse(sample);

        Assert.Equal(CgroupMode.Hybrid, layout.Mode);
        Assert.Equal("/sys/fs/cgroup/cpu", layout.V1Mounts["cpu"]);
        Assert.Equal("/sys/fs/cgroup/cpuacct", layout.V1Mounts["cpuacct"]);
        Assert.Equal(2, layout.V1Hierarchies.Count);
    }

    [Fact]
    public void Parse_EscapedMountPoint_IsUnescaped()
    {
        const string sample = @"26 22 0:23 / /run/my\040cgroups rw,relatime shared:4 master:2 - cgroup2 cgroup2 rw";

        Assert.Equal("/run/my cgroups", CgroupLayout.Parse(sample).UnifiedMount);
    }

    [Fact]
    public void Parse_NoCgroupMount_Throws()
    {
        var e = Assert.Throws<CgroupException>(() => CgroupLayout.Parse("22 28 0:21 / /sys rw - sysfs sysfs rw\n"));
        Assert.Contains("no cgroup", e.Message);
    }

    [Fact]
    public void Factory_PicksManagerByMode()
    {
        using var fs = new TempCgroupFs();
        Assert.IsType<V1Manager>(CgroupManagers.Create("a", CgroupLayout.Parse(V1Sample), fs));
        Assert.IsType<V2Manager>(CgroupManagers.Create("a", CgroupLayout.Parse(V2Sample), fs));
        Assert.IsType<HybridManager>(CgroupManagers.Create("a", CgroupLayout.Parse(HybridSample), fs));
    }
}
