using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

public class CgroupValidationTests
{
    public static TheoryData<CgroupResources, string> Invalid => new()
    {
        { new CgroupResources { CpuQuota = 500 }, "linux.resources.cpu.quota: must be -1 or >= 1000" },
        { new CgroupResources { CpuQuota = 0 }, "linux.resources.cpu.quota" },
        { new CgroupResources { CpuPeriod = 999 }, "linux.resources.cpu.period" },
        { new CgroupResources { CpuShares = 1 }, "linux.resources.cpu.shares" },
        { new CgroupResources { CpusetCpus = "0-a" }, "linux.resources.cpu.cpus" },
        { new CgroupResources { CpusetCpus = "3-1" }, "linux.resources.cpu.cpus" },
        { new CgroupResources { MemoryLimit = 0 }, "linux.resources.memory.limit" },
        { new CgroupResources { MemorySwap = 100 }, "linux.resources.memory.swap: needs a memory limit" },
        { new CgroupResources { MemoryLimit = 200, MemorySwap = 100 }, "linux.resources.memory.swap: must be >= the memory limit" },
        { new CgroupResources { MemorySwappiness = 101 }, "linux.resources.memory.swappiness" },
        { new CgroupResources { PidsLimit = -2 }, "linux.resources.pids.limit" },
        { new CgroupResources { BlkioWeight = 5 }, "linux.resources.blockIO.weight" },
        { new CgroupResources { BlkioThrottleReadBps = [new(-1, 0, 10)] }, "linux.resources.blockIO.throttleReadBpsDevice" },
        { new CgroupResources { HugepageLimits = new Dictionary<string, ulong> { ["2M"] = 1 } }, "linux.resources.hugepageLimits" },
        { new CgroupResources { Unified = new Dictionary<string, string> { ["../memory.max"] = "1" } }, "linux.resources.unified" },
        { new CgroupResources { Unified = new Dictionary<string, string> { ["memory.high"] = "1\n2" } }, "linux.resources.unified[memory.high]" },
        { new CgroupResources { Unified = new Dictionary<string, string> { ["cgroup.procs"] = "1" } }, "linux.resources.unified: this file is managed by the runtime" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Validate_RejectsOutOfRangeValues_NamingTheField(CgroupResources resources, string expected)
    {
        var e = Assert.Throws<CgroupValidationException>(() => CgroupValidation.Validate(resources));
        Assert.StartsWith(expected, e.Message);
        // The field alone, typed, for callers that name it in their own schema (the daemon: CRI).
        Assert.StartsWith(e.Field + ": ", e.Message);
        Assert.StartsWith("linux.resources.", e.Field);
    }

    [Fact]
    public void Validate_AcceptsTypicalKubeletResources()
    {
        CgroupValidation.Validate(new CgroupResources
        {
            CpuShares = 102, CpuQuota = 50000, CpuPeriod = 100000, CpusetCpus = "0-1,3", CpusetMems = "0",
            MemoryLimit = 1 << 30, MemorySwap = 1 << 30, MemorySwappiness = 0, PidsLimit = -1,
            HugepageLimits = new Dictionary<string, ulong> { ["2MB"] = 0, ["1GB"] = 0 },
            Unified = new Dictionary<string, string> { ["memory.high"] = "max" },
        });
    }

    [Theory]
    [InlineData("")]
    [InlineData("/")]
    [InlineData("a/../b")]
    public void Manager_RejectsRootOrEscapingPath(string path)
    {
        Assert.Throws<ArgumentException>(() => new V2Manager(path, "/sys/fs/cgroup"));
    }
}
