using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

/// <summary>PSI files (cpu.pressure, memory.pressure, io.pressure): parsed exactly, and absent
/// (null, not zeros) where the kernel keeps none.</summary>
public sealed class PressureTests : IDisposable
{
    private readonly TempCgroupFs _fs = new();

    public void Dispose() => _fs.Dispose();

    [Fact]
    public void ParsePressure_ReadsSomeAndFullLines()
    {
        var p = CgroupFiles.ParsePressure("some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.75 avg60=0.10 avg300=0.01 total=654\n");

        Assert.Equal(new PsiLine(123456, 1.50, 0.25, 0.00), p!.Some);
        Assert.Equal(new PsiLine(654, 0.75, 0.10, 0.01), p.Full);
    }

    [Fact]
    public void ParsePressure_KernelsWithOnlySomeForCpu_LeaveFullNull()
    {
        var p = CgroupFiles.ParsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n");

        Assert.Equal(42UL, p!.Some!.TotalMicros);
        Assert.Null(p.Full);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("garbage\n")]
    public void ParsePressure_MissingOrUnreadable_IsNull(string? text) => Assert.Null(CgroupFiles.ParsePressure(text));

    [Fact]
    public void V2_Stats_ReadPressureOfTheCgroup()
    {
        SeedV2Root();
        var m = new V2Manager("pod/ctr", _fs.Abs("unified"), _fs);
        m.Create(new CgroupResources());
        _fs.Seed("unified/pod/ctr/cpu.pressure", "some avg10=2.00 avg60=1.00 avg300=0.50 total=900\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n");
        _fs.Seed("unified/pod/ctr/memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        _fs.Seed("unified/pod/ctr/io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n");

        var s = m.Stats();

        Assert.Equal(900UL, s.CpuPressure!.Some!.TotalMicros);
        Assert.Equal(2.00, s.CpuPressure.Some.Avg10);
        Assert.Equal(10UL, s.CpuPressure.Full!.TotalMicros);
        Assert.NotNull(s.MemoryPressure);
        Assert.Equal(3UL, s.IoPressure!.Full!.TotalMicros);
    }

    [Fact]
    public void V2_Stats_WithoutPressureFiles_HaveNoPsi()
    {
        SeedV2Root();
        var m = new V2Manager("pod/ctr", _fs.Abs("unified"), _fs);
        m.Create(new CgroupResources());

        var s = m.Stats();

        Assert.Null(s.CpuPressure);
        Assert.Null(s.MemoryPressure);
        Assert.Null(s.IoPressure);
    }

    private void SeedV2Root()
    {
        _fs.Seed("unified/cgroup.controllers", "cpu memory pids");
        _fs.Seed("unified/cgroup.subtree_control", "cpu memory pids");
        _fs.Seed("unified/cgroup.procs");
        _fs.Seed("unified/cgroup.events", "populated 0\nfrozen 0\n");
        _fs.Seed("unified/cpu.stat", "usage_usec 1\n");
        _fs.Seed("unified/memory.current", "1");
    }
}
