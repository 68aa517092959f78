using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

/// <summary>HybridManager against a temp tree like this node: v1 cpu, memory, pids, freezer (no
/// cpuacct, no hugetlb) plus a cgroup2 mount whose root hands hugetlb down.</summary>
public sealed class HybridManagerTests : IDisposable
{
    private readonly TempCgroupFs _fs = new();
    private readonly CgroupLayout _layout;

    public HybridManagerTests()
    {
        string[] v1 = ["cpu", "memory", "pids", "freezer"];
        var mountinfo = string.Join('\n', v1.Select((h, i) => $"{30 + i} 25 0:{30 + i} / {_fs.Abs(h)} rw - cgroup cgroup rw,{h}"))
            + $"\n40 25 0:40 / {_fs.Abs("unified")} rw - cgroup2 cgroup2 rw";
        _layout = CgroupLayout.Parse(mountinfo);
        foreach (var h in v1) _fs.Seed($"{h}/cgroup.procs");
        _fs.Seed("cpu/cpu.shares", "1024");
        _fs.Seed("memory/memory.limit_in_bytes", "9223372036854771712");
        _fs.Seed("memory/memory.usage_in_bytes", "100");
        _fs.Seed("pids/pids.max", "max");
        _fs.Seed("freezer/freezer.state", "THAWED");
        _fs.Seed("unified/cgroup.controllers", "hugetlb");
        _fs.Seed("unified/cgroup.subtree_control", "hugetlb");
        _fs.Seed("unified/cgroup.procs");
        _fs.Seed("unified/cgroup.events", "populated 0\nfrozen 0\n");
        _fs.Seed("unified/cgroup.kill");
        _fs.Seed("unified/cpu.stat", "usage_usec 40\nuser_usec 30\nsystem_usec 10\n");
        _fs.Seed("unified/hugetlb.2MB.max", "max");
        _fs.Seed("unified/hugetlb.2MB.rsvd.max", "max"); // a raw v2 file with no typed field
    }

    public void Dispose() => _fs.Dispose();

    private HybridManager Manager() => new("pod/ctr", _layout, _fs);

    [Fact]
    public void Hybrid_Create_PutsV1LimitsOnV1AndHugetlbOnTheCgroup2Mount()
    {
        Manager().Create(new CgroupResources
        {
            CpuShares = 256,
            MemoryLimit = 1 << 20,
            HugepageLimits = new Dictionary<string, ulong> { ["2MB"] = 1 << 22 },
        });

        Assert.Equal("256", _fs.Text("cpu/pod/ctr/cpu.shares"));
        Assert.Equal((1 << 20).ToString(), _fs.Text("memory/pod/ctr/memory.limit_in_bytes"));
        Assert.Equal((1 << 22).ToString(), _fs.Text("unified/pod/ctr/hugetlb.2MB.max"));
    }

    [Fact]
    public void Hybrid_Unified_GoesToTheCgroup2MountInsteadOfBeingRefused()
    {
        Manager().Create(new CgroupResources { Unified = new Dictionary<string, string> { ["hugetlb.2MB.rsvd.max"] = "4194304" } });

        Assert.Equal("4194304", _fs.Text("unified/pod/ctr/hugetlb.2MB.rsvd.max"));
    }

    [Fact]
    public void Hybrid_AddProcess_JoinsEveryV1HierarchyAndTheCgroup2Mount()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.AddProcess(99);

        Assert.Equal(["cpu/pod/ctr/cgroup.procs", "freezer/pod/ctr/cgroup.procs", "memory/pod/ctr/cgroup.procs", "pids/pod/ctr/cgroup.procs", "unified/pod/ctr/cgroup.procs"],
            _fs.Writes.Where(w => w.Value == "99").Select(w => w.File).Order());
        Assert.Equal([99], m.Processes());
    }

    [Fact]
    public void Hybrid_Stats_TakeCpuUsageFromTheCgroup2MountWithoutV1Cpuacct()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        var s = m.Stats();

        Assert.Equal(40_000UL, s.CpuUsageNanos);
        Assert.Equal(30_000UL, s.CpuUserNanos);
        Assert.Equal(100UL, s.MemoryUsageBytes);
    }

    [Fact]
    public void Hybrid_Stats_TakePsiFromTheCgroup2Mount_WhereTasksAreTracked()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        _fs.Seed("unified/pod/ctr/cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=77\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n");

        var s = m.Stats();

        Assert.Equal(77UL, s.CpuPressure!.Some!.TotalMicros);
        Assert.Null(s.MemoryPressure); // no memory.pressure in this tree: absent, not zero
    }

    [Fact]
    public void Hybrid_Freeze_UsesTheV1Freezer()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.Freeze();

        Assert.Equal("FROZEN", _fs.Text("freezer/pod/ctr/freezer.state"));
        Assert.Empty(_fs.WritesTo("cgroup.freeze"));
    }

    [Fact]
    public void Hybrid_Destroy_RemovesBothSides()
    {
        var m = Manager();
        m.Create(new CgroupResources());

        m.Destroy();

        Assert.False(Directory.Exists(_fs.Abs("memory/pod/ctr")));
        Assert.False(Directory.Exists(_fs.Abs("unified/pod/ctr")));
    }

    [Fact]
    public void Hybrid_DestroyOfACgroupAlreadyGone_LooksUpNothingInside()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        m.Destroy();
        var before = _fs.MissingLookups;

        m.Destroy();

        Assert.Equal(before, _fs.MissingLookups);
    }

    [Fact]
    public void Hybrid_DestroyOfACgroupLeftOnOneSideOnly_RemovesIt()
    {
        var m = Manager();
        m.Create(new CgroupResources());
        m.Destroy();
        Directory.CreateDirectory(_fs.Abs("unified/pod/ctr"));

        m.Destroy();

        Assert.False(Directory.Exists(_fs.Abs("unified/pod/ctr")));
    }
}
