using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Shim.Supervisor;
using CriRuntime.Tests.Unit.Cgroups;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The shim's "update" operation against a temp bundle and the temp-tree cgroupfs
/// (a cgroup2 root like V2ManagerTests'): config.json and the cgroup say the same afterwards,
/// and a failure leaves both as they were.</summary>
public sealed class ResourceUpdateTests : IDisposable
{
    private readonly TempCgroupFs _fs = new();
    private readonly DirectoryInfo _bundle = Directory.CreateTempSubdirectory("shim-bundle-");
    private readonly List<string> _undoFailures = [];

    public ResourceUpdateTests()
    {
        foreach (var (file, content) in new (string, string)[]
        {
            ("cgroup.controllers", "cpu memory pids"), ("cgroup.subtree_control", "cpu memory pids"), ("cgroup.procs", ""),
            ("cpu.weight", "100"), ("cpu.max", "max 100000"), ("memory.max", "max"), ("memory.low", "0"),
            ("memory.swap.max", "max"), ("pids.max", "max"),
        })
        {
            _fs.Seed($"unified/{file}", content);
        }
    }

    public void Dispose()
    {
        _fs.Dispose();
        _bundle.Delete(recursive: true);
    }

    private V2Manager Cgroup() => new("pod/ctr", _fs.Abs("unified"), _fs);

    private static Spec Created => new()
    {
        Process = new Process { Args = ["sleep", "1"] },
        Linux = new Linux
        {
            CgroupsPath = "pod/ctr",
            Resources = new LinuxResources
            {
                Cpu = new LinuxCpu { Quota = 20_000, Period = 100_000 },
                Memory = new LinuxMemory { Limit = 32 << 20 },
                Pids = new LinuxPids { Limit = 100 },
                Devices = [new LinuxDeviceCgroup { Allow = false, Access = "rwm" }],
            },
        },
    };

    /// <summary>The container as the shim makes it: the bundle's config.json and its cgroup.</summary>
    private (ResourceUpdater Updater, Spec Spec) Make()
    {
        var spec = Created;
        SpecFile.Save(_bundle.FullName, spec);
        Cgroup().Create(CgroupResourcesFromSpec.Map(spec.Linux!.Resources));
        _fs.Writes.Clear();
        return (new ResourceUpdater(_bundle.FullName, Cgroup(), (step, e) => _undoFailures.Add($"{step}: {e.Message}")), spec);
    }

    private string ConfigJson => File.ReadAllText(Path.Combine(_bundle.FullName, SpecFile.ConfigName));

    [Fact]
    public void Update_WritesTheCgroup_AndTheBundleSaysTheSame_KeepingWhatCreationDecided()
    {
        var (updater, spec) = Make();

        var next = updater.Apply(spec, new LinuxResources { Cpu = new LinuxCpu { Quota = 50_000 }, Memory = new LinuxMemory { Limit = 64 << 20 } });

        Assert.Equal("50000", _fs.Text("unified/pod/ctr/cpu.max")); // the quota alone: the kernel keeps the period
        Assert.Equal($"{64 << 20}", _fs.Text("unified/pod/ctr/memory.max"));
        var onDisk = SpecFile.Load(_bundle.FullName).Linux!.Resources!;
        Assert.Equal(64 << 20, onDisk.Memory!.Limit);
        Assert.Equal(50_000, onDisk.Cpu!.Quota);
        Assert.Equal(100_000UL, onDisk.Cpu.Period); // not in the update: kept
        Assert.Equal(100, onDisk.Pids!.Limit); // the runtime's pids limit, not the CRI's to change
        Assert.Single(onDisk.Devices!); // device rules of the creation stay
        Assert.Equal(onDisk, next.Linux!.Resources!, ResourcesComparer.Instance);
        Assert.Equal("pod/ctr", next.Linux.CgroupsPath);
    }

    [Fact]
    public void Update_WritesOnlyWhatItSets_IntoTheCgroup()
    {
        var (updater, spec) = Make();

        updater.Apply(spec, new LinuxResources { Memory = new LinuxMemory { Limit = 64 << 20 } });

        Assert.Equal([("unified/pod/ctr/memory.max", $"{64 << 20}")], _fs.Writes);
    }

    [Fact]
    public void Update_WhoseCgroupWriteFails_PutsConfigJsonBack()
    {
        var (updater, spec) = Make();
        var before = ConfigJson;
        File.Delete(_fs.Abs("unified/pod/ctr/memory.max")); // the kernel refuses the file: ENOENT

        Assert.Throws<CgroupException>(() => updater.Apply(spec, new LinuxResources { Memory = new LinuxMemory { Limit = 64 << 20 } }));

        Assert.Equal(before, ConfigJson);
        // Putting the old memory limit back meets the same refusal: named, and nothing else failed.
        Assert.Equal("restore cgroup limits", Assert.Single(_undoFailures).Split(':')[0]);
    }

    [Fact]
    public void Update_WhoseCgroupWriteFailsPartWay_PutsTheLimitsItWroteBack()
    {
        var (updater, spec) = Make();
        var cpuBefore = _fs.Text("unified/pod/ctr/cpu.max");
        File.Delete(_fs.Abs("unified/pod/ctr/memory.max")); // cpu is written, then memory is refused

        Assert.Throws<CgroupException>(() => updater.Apply(spec, new LinuxResources { Cpu = new LinuxCpu { Quota = 50_000 }, Memory = new LinuxMemory { Limit = 64 << 20 } }));

        Assert.Contains(_fs.Writes, w => w.Item1 == "unified/pod/ctr/cpu.max" && w.Item2 == "50000");
        // The quota of the old spec, written alone (the kernel keeps the period).
        Assert.Equal("20000 100000", cpuBefore);
        Assert.Equal("20000", _fs.Text("unified/pod/ctr/cpu.max"));
        Assert.Single(_undoFailures); // memory.max is still refused: named, not thrown over the first error
    }

    [Fact]
    public void Previous_OfAnUpdate_IsTheOldLimit_OrUnlimitedWhereTheKernelHasOne_AndOnlyForWhatTheUpdateWrote()
    {
        var before = new CgroupResources { CpuShares = 512, MemoryLimit = 1 << 30, BlkioThrottleReadBps = [new BlkioThrottle(8, 0, 100)] };
        var written = new CgroupResources
        {
            CpuShares = 256, CpuQuota = 20_000, MemoryLimit = 1 << 20, PidsLimit = 10, CpusetCpus = "0",
            BlkioThrottleReadBps = [new BlkioThrottle(8, 0, 5), new BlkioThrottle(8, 16, 5)],
        };

        var undo = CgroupRestore.Previous(before, written);

        Assert.Equal((512UL, -1L, 1L << 30, -1L), (undo.CpuShares!.Value, undo.CpuQuota!.Value, undo.MemoryLimit!.Value, undo.PidsLimit!.Value));
        Assert.Null(undo.CpusetCpus); // unset before, and no "unset" to write: left
        Assert.Null(undo.MemorySwap); // not written by the update
        Assert.Equal([new BlkioThrottle(8, 0, 100), new BlkioThrottle(8, 16, 0)], undo.BlkioThrottleReadBps);
    }

    [Fact]
    public void Update_WhoseBundleCannotBeWritten_LeavesTheCgroupUntouched()
    {
        var (_, spec) = Make();
        var notADirectory = Path.Combine(_bundle.FullName, "file");
        File.WriteAllText(notADirectory, "");
        var updater = new ResourceUpdater(notADirectory, Cgroup(), (step, e) => _undoFailures.Add(step));

        Assert.ThrowsAny<IOException>(() => updater.Apply(spec, new LinuxResources { Memory = new LinuxMemory { Limit = 64 << 20 } }));

        Assert.Empty(_fs.Writes);
        Assert.Empty(_undoFailures);
    }

    [Fact]
    public void Update_ThatTheKernelWouldRefuse_WritesNothing_AndNamesTheField()
    {
        var (updater, spec) = Make();
        var before = ConfigJson;

        var e = Assert.Throws<CgroupValidationException>(() => updater.Apply(spec, new LinuxResources { Cpu = new LinuxCpu { Shares = 1 } }));

        Assert.Contains("cpu.shares", e.Field);
        Assert.Empty(_fs.Writes);
        Assert.Equal(before, ConfigJson);
    }

    [Fact]
    public void Merge_KeepsUnsetFields_AndMergesHugepagesPerSize_AndUnifiedPerKey()
    {
        var current = new LinuxResources
        {
            Cpu = new LinuxCpu { Shares = 512, Cpus = "0-1" },
            HugepageLimits = [new LinuxHugepageLimit { PageSize = "2MB", Limit = 1 }, new LinuxHugepageLimit { PageSize = "1GB", Limit = 2 }],
            Unified = new Dictionary<string, string> { ["memory.high"] = "1000", ["io.weight"] = "50" },
        };

        var merged = ResourceUpdate.Merge(current, new LinuxResources
        {
            Cpu = new LinuxCpu { Shares = 1024 },
            HugepageLimits = [new LinuxHugepageLimit { PageSize = "2MB", Limit = 4 }],
            Unified = new Dictionary<string, string> { ["memory.high"] = "2000" },
        });

        Assert.Equal(1024UL, merged.Cpu!.Shares);
        Assert.Equal("0-1", merged.Cpu.Cpus);
        Assert.Equal(["1GB=2", "2MB=4"], merged.HugepageLimits!.Select(h => $"{h.PageSize}={h.Limit}").Order());
        Assert.Equal("2000", merged.Unified!["memory.high"]);
        Assert.Equal("50", merged.Unified["io.weight"]);
    }

    [Fact]
    public void Merge_RefusesDeviceRules()
    {
        var e = Assert.Throws<ArgumentException>(() => ResourceUpdate.Merge(null, new LinuxResources { Devices = [new LinuxDeviceCgroup { Allow = true }] }));
        Assert.Contains("linux.resources.devices", e.Message);
    }

    /// <summary>Records compare their lists by reference: compare the JSON instead.</summary>
    private sealed class ResourcesComparer : IEqualityComparer<LinuxResources>
    {
        public static readonly ResourcesComparer Instance = new();
        private static string Json(LinuxResources r) => System.Text.Encoding.UTF8.GetString(SpecFile.Serialize(new Spec { Linux = new Linux { Resources = r } }));
        public bool Equals(LinuxResources? x, LinuxResources? y) => x is not null && y is not null && Json(x) == Json(y);
        public int GetHashCode(LinuxResources r) => Json(r).GetHashCode(StringComparison.Ordinal);
    }
}
