using CriRuntime.Accounting;
using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Accounting;

/// <summary>Each beancounter from its cgroup v1 and v2 sources; a counter the cgroup lacks is
/// absent (null, with the reason), never 0.</summary>
public class BeancountersTests
{
    private static Func<string, string?> Files(Dictionary<string, string> files) => p => files.GetValueOrDefault(p);

    private static BeancounterRow Row(IReadOnlyList<BeancounterRow> rows, string name) => rows.Single(r => r.Resource == name);

    [Fact]
    public void OnV1_EachRowComesFromItsControllersHierarchy()
    {
        var layout = new CgroupLayout
        {
            Mode = CgroupMode.Hybrid,
            V1Mounts = new Dictionary<string, string>
            {
                ["pids"] = "/cg/pids", ["memory"] = "/cg/memory", ["blkio"] = "/cg/blkio", ["cpu"] = "/cg/cpu,cpuacct", ["cpuacct"] = "/cg/cpu,cpuacct",
            },
            UnifiedMount = "/cg/unified",
        };
        var rows = Beancounters.Read(layout, "/pod/ctr", Files(new()
        {
            ["/cg/pids/pod/ctr/pids.current"] = "64\n", ["/cg/pids/pod/ctr/pids.peak"] = "64\n", ["/cg/pids/pod/ctr/pids.max"] = "64\n",
            ["/cg/pids/pod/ctr/pids.events"] = "max 1723\n",
            ["/cg/memory/pod/ctr/memory.usage_in_bytes"] = "1000\n", ["/cg/memory/pod/ctr/memory.max_usage_in_bytes"] = "67108864\n",
            ["/cg/memory/pod/ctr/memory.limit_in_bytes"] = "67108864\n", ["/cg/memory/pod/ctr/memory.failcnt"] = "42\n",
            ["/cg/memory/pod/ctr/memory.oom_control"] = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ["/cg/memory/pod/ctr/memory.stat"] = "cache 4096\nshmem 8192\nunevictable 0\n",
            ["/cg/blkio/pod/ctr/blkio.throttle.io_service_bytes"] = "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
            ["/cg/blkio/pod/ctr/blkio.throttle.io_serviced"] = "Total 3\n",
            ["/cg/cpu,cpuacct/pod/ctr/cpuacct.usage"] = "123456789\n",
            ["/cg/cpu,cpuacct/pod/ctr/cpu.stat"] = "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
        }), []);

        Assert.Equal(new BeancounterRow("numproc", 64, 64, 64, 1723, "processes", "pids.current, pids.peak, pids.max, pids.events max"), Row(rows, "numproc"));
        var mem = Row(rows, "physpages");
        Assert.Equal((1000UL, 67108864UL, 67108864UL, 42UL), (mem.Held!.Value, mem.MaxHeld!.Value, mem.Limit!.Value, mem.FailCount!.Value));
        Assert.Equal(2UL, Row(rows, "oomkills").Held);
        Assert.Equal((4096UL, 8192UL, 0UL), (Row(rows, "pagecache").Held!.Value, Row(rows, "shmpages").Held!.Value, Row(rows, "lockedpages").Held!.Value));
        Assert.Equal((30UL, 3UL), (Row(rows, "blkio.bytes").Held!.Value, Row(rows, "blkio.ops").Held!.Value));
        Assert.Equal(123456789UL, Row(rows, "cputime").Held);
        Assert.Equal((5000UL, 4UL), (Row(rows, "cputhrottle").Held!.Value, Row(rows, "cputhrottle").FailCount!.Value));
        // No kmem or swap accounting files on this host: said, not zero.
        Assert.Null(Row(rows, "kmemsize").Held);
        Assert.NotNull(Row(rows, "kmemsize").Missing);
        Assert.NotNull(Row(rows, "swappages").Missing);
        Assert.NotNull(Row(rows, "numfile").Missing);
    }

    [Fact]
    public void OnV2_TheUnifiedFilesAreRead_AndMaxIsUnlimited()
    {
        var layout = new CgroupLayout { Mode = CgroupMode.V2, V1Mounts = new Dictionary<string, string>(), UnifiedMount = "/cg" };
        var rows = Beancounters.Read(layout, "/pod/ctr", Files(new()
        {
            ["/cg/pod/ctr/cgroup.controllers"] = "cpu io memory pids\n",
            ["/cg/pod/ctr/pids.current"] = "3", ["/cg/pod/ctr/pids.max"] = "max", ["/cg/pod/ctr/pids.events"] = "max 0",
            ["/cg/pod/ctr/memory.current"] = "500", ["/cg/pod/ctr/memory.peak"] = "900", ["/cg/pod/ctr/memory.max"] = "1048576",
            ["/cg/pod/ctr/memory.events"] = "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n",
            ["/cg/pod/ctr/memory.stat"] = "file 100\nkernel 50\nsock 10\nshmem 5\nunevictable 0\n",
            ["/cg/pod/ctr/memory.swap.current"] = "0", ["/cg/pod/ctr/memory.swap.max"] = "max", ["/cg/pod/ctr/memory.swap.events"] = "max 0",
            ["/cg/pod/ctr/io.stat"] = "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=1 rios=1 wios=1\n",
            ["/cg/pod/ctr/cpu.stat"] = "usage_usec 10\nnr_throttled 2\nthrottled_usec 3\n",
        }), []);

        Assert.Equal((3UL, BeancounterRow.Unlimited, 0UL), (Row(rows, "numproc").Held!.Value, Row(rows, "numproc").Limit!.Value, Row(rows, "numproc").FailCount!.Value));
        Assert.Null(Row(rows, "numproc").MaxHeld); // no pids.peak: absent, not 0
        Assert.Equal((500UL, 900UL, 1048576UL, 7UL), (Row(rows, "physpages").Held!.Value, Row(rows, "physpages").MaxHeld!.Value, Row(rows, "physpages").Limit!.Value, Row(rows, "physpages").FailCount!.Value));
        Assert.Equal(1UL, Row(rows, "oomkills").Held);
        Assert.Equal((50UL, 10UL, 100UL), (Row(rows, "kmemsize").Held!.Value, Row(rows, "tcpbuf").Held!.Value, Row(rows, "pagecache").Held!.Value));
        Assert.Equal(BeancounterRow.Unlimited, Row(rows, "swappages").Limit);
        Assert.Equal((302UL, 5UL), (Row(rows, "blkio.bytes").Held!.Value, Row(rows, "blkio.ops").Held!.Value));
        Assert.Equal((10_000UL, 3_000UL, 2UL), (Row(rows, "cputime").Held!.Value, Row(rows, "cputhrottle").Held!.Value, Row(rows, "cputhrottle").FailCount!.Value));
    }

    [Fact]
    public void AControllerTheCgroupDoesNotHave_IsSaidSo()
    {
        var layout = new CgroupLayout { Mode = CgroupMode.V2, V1Mounts = new Dictionary<string, string>(), UnifiedMount = "/cg" };
        var rows = Beancounters.Read(layout, "/pod", Files(new() { ["/cg/pod/cgroup.controllers"] = "memory" }), ["2MB"]);

        Assert.Contains("pids", Row(rows, "numproc").Missing);
        Assert.Null(Row(rows, "numproc").Held);
        Assert.Contains("not accounted", Beancounters.Format("pod x", rows));
        Assert.Contains("hugetlb", Row(rows, "hugepages.2MB").Missing);
    }
}
