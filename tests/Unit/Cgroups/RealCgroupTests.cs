using System.Diagnostics;
using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

/// <summary>Runs only as root on a node with the named hierarchy mounted (found through
/// mountinfo, as the runtime finds it); otherwise the test is reported as skipped.</summary>
public sealed class RootCgroupFactAttribute : FactAttribute
{
    public RootCgroupFactAttribute(string needs)
    {
        if (Environment.UserName != "root") { Skip = "needs root"; return; }
        CgroupLayout layout;
        try { layout = CgroupLayout.Detect(); }
        catch (CgroupException e) { Skip = e.Message; return; }
        var ok = needs switch
        {
            "v1" => layout.V1Mounts.ContainsKey("memory") && layout.V1Mounts.ContainsKey("freezer") && layout.V1Mounts.ContainsKey("pids"),
            "v1-memsw" => layout.V1Mounts.TryGetValue("memory", out var memory) && File.Exists($"{memory}/memory.memsw.limit_in_bytes"),
            "v2" => layout.UnifiedMount is not null,
            "hybrid" => layout.Mode == CgroupMode.Hybrid,
            _ => false,
        };
        if (!ok) Skip = $"needs a {needs} cgroup layout";
    }
}

/// <summary>Against this machine's real cgroups. Each test works under its own
/// criruntime-test-&lt;guid&gt; parent and removes it; nothing else is touched.</summary>
public sealed class RealCgroupTests : IDisposable
{
    private readonly string _parent = $"criruntime-test-{Guid.NewGuid():N}";
    private readonly List<Process> _processes = [];
    private readonly List<ICgroupManager> _cleanup = [];
    private static readonly CgroupLayout Layout = CgroupLayout.Detect();

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit();
            p.Dispose();
        }
        // Leaf first, then the test parent.
        foreach (var m in Enumerable.Reverse(_cleanup))
        {
            try { m.Destroy(); } catch (CgroupException) { }
        }
    }

    private T Track<T>(T manager) where T : ICgroupManager
    {
        _cleanup.Add(manager);
        return manager;
    }

    /// <summary>A shell that waits for a line on stdin before running <paramref name="then"/>, so it
    /// can be moved into the cgroup first and does its work (and allocations) inside.</summary>
    private Process StartWaiting(string then)
    {
        var p = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"read x; {then}"]) { RedirectStandardInput = true })!;
        _processes.Add(p);
        return p;
    }

    private static void Go(Process p)
    {
        p.StandardInput.WriteLine("go");
        p.StandardInput.Flush();
    }

    /// <summary>Test-side bounded re-read of kernel state (no event to wait on).</summary>
    private static void Eventually(Func<bool> condition, string what)
    {
        var sw = Stopwatch.StartNew();
        var spin = new SpinWait();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(5)) Assert.Fail($"timed out waiting for {what}");
            spin.SpinOnce(sleep1Threshold: 10);
        }
    }

    private static string Comm(int pid) => File.ReadAllText($"/proc/{pid}/comm").Trim();

    [RootCgroupFact("v1")]
    public void RealV1_LimitsStatsFreezeKillAndDestroy()
    {
        Track(new V1Manager(_parent, Layout));
        var m = Track(new V1Manager($"{_parent}/ctr", Layout));
        m.Create(new CgroupResources { MemoryLimit = 64 << 20, CpuQuota = 50000, CpuPeriod = 100000, CpuShares = 512, PidsLimit = 10 });
        var memory = m.Dir("memory")!;
        Assert.Equal((64 << 20).ToString(), File.ReadAllText($"{memory}/memory.limit_in_bytes").Trim());
        Assert.Equal("50000", File.ReadAllText($"{m.Dir("cpu")}/cpu.cfs_quota_us").Trim());
        Assert.Equal("512", File.ReadAllText($"{m.Dir("cpu")}/cpu.shares").Trim());
        Assert.Equal("10", File.ReadAllText($"{m.Dir("pids")}/pids.max").Trim());
        if (m.Dir("cpuset") is { } cpuset)
        {
            // Both the new parent and the leaf got usable cpus/mems, or AddProcess would fail below.
            var rootCpus = File.ReadAllText($"{Layout.V1Mounts["cpuset"]}/cpuset.cpus").Trim();
            Assert.Equal(rootCpus, File.ReadAllText($"{cpuset}/cpuset.cpus").Trim());
            Assert.NotEqual("", File.ReadAllText($"{cpuset}/cpuset.mems").Trim());
        }

        var p = StartWaiting("exec sleep 30");
        m.AddProcess(p.Id);
        Go(p);
        Eventually(() => Comm(p.Id) == "sleep", "the shell to exec sleep inside the cgroup");

        Assert.Equal([p.Id], m.Processes());
        var stats = m.Stats();
        Assert.Equal(1UL, stats.PidsCurrent);
        Assert.Equal(10UL, stats.PidsLimit);
        Assert.Equal(64UL << 20, stats.MemoryLimitBytes);
        Assert.True(stats.MemoryUsageBytes > 0, "memory usage after exec inside the cgroup");
        Assert.True(stats.MemoryWorkingSetBytes <= stats.MemoryUsageBytes);
        Assert.False(m.OomKilled());

        m.Freeze();
        Assert.Equal("FROZEN", File.ReadAllText($"{m.Dir("freezer")}/freezer.state").Trim());
        m.Thaw();
        Assert.Equal("THAWED", File.ReadAllText($"{m.Dir("freezer")}/freezer.state").Trim());

        m.KillAll();
        Assert.True(p.WaitForExit(5000));
        Assert.Equal(128 + 9, p.ExitCode); // SIGKILL
        Assert.Empty(m.Processes());

        m.Destroy();
        foreach (var h in Layout.V1Hierarchies) Assert.False(Directory.Exists($"{h}/{_parent}/ctr"), h);
        new V1Manager(_parent, Layout).Destroy();
        foreach (var h in Layout.V1Hierarchies) Assert.False(Directory.Exists($"{h}/{_parent}"), h);
    }

    [RootCgroupFact("v1")]
    public void RealV1_KillAll_KillsForkedChildrenToo()
    {
        Track(new V1Manager(_parent, Layout));
        var m = Track(new V1Manager($"{_parent}/ctr", Layout));
        m.Create(new CgroupResources());
        var p = StartWaiting("sleep 30 & sleep 30 & wait");
        m.AddProcess(p.Id);
        Go(p);
        Eventually(() => m.Processes().Count == 3, "the shell and its two sleeps");

        m.KillAll();

        Assert.Empty(m.Processes());
        Assert.True(p.WaitForExit(5000));
        Assert.Equal(128 + 9, p.ExitCode);
    }

    [RootCgroupFact("v1-memsw")]
    public void RealV1_MemoryAndSwap_RaiseAndLowerInAnOrderTheKernelAccepts()
    {
        Track(new V1Manager(_parent, Layout));
        var m = Track(new V1Manager($"{_parent}/ctr", Layout));
        var memory = m.Dir("memory")!;
        string Read(string f) => File.ReadAllText($"{memory}/{f}").Trim();

        m.Create(new CgroupResources { MemoryLimit = 64 << 20, MemorySwap = 128 << 20 });
        Assert.Equal((128 << 20).ToString(), Read("memory.memsw.limit_in_bytes"));

        // Raising both: a limit above the current memsw would be EINVAL if written first.
        m.Update(new CgroupResources { MemoryLimit = 256 << 20, MemorySwap = 512 << 20 });
        Assert.Equal((256 << 20).ToString(), Read("memory.limit_in_bytes"));
        Assert.Equal((512 << 20).ToString(), Read("memory.memsw.limit_in_bytes"));

        // Lowering both: a memsw below the current limit would be EINVAL if written first.
        m.Update(new CgroupResources { MemoryLimit = 32 << 20, MemorySwap = 32 << 20 });
        Assert.Equal((32 << 20).ToString(), Read("memory.limit_in_bytes"));
        Assert.Equal((32 << 20).ToString(), Read("memory.memsw.limit_in_bytes"));

        // Lifting the limit lifts memsw too.
        m.Update(new CgroupResources { MemoryLimit = -1 });
        Assert.Equal(ulong.MaxValue, m.Stats().MemoryLimitBytes);
    }

    [RootCgroupFact("v1")]
    public void RealV1_RefusedWrite_NamesFileValueAndErrno()
    {
        Track(new V1Manager(_parent, Layout));
        var m = Track(new V1Manager($"{_parent}/ctr", Layout));
        m.Create(new CgroupResources());
        var file = $"{m.Dir("cpu")}/cpu.cfs_quota_us";

        // Below the kernel's 1 ms minimum: validation would catch it, the raw boundary must report it.
        var e = Assert.Throws<CgroupException>(() => CgroupFs.Instance.Write(file, "500"));

        Assert.Equal($"write 500 to {file}: Invalid argument (errno 22)", e.Message);
        Assert.Equal(22, e.Errno);
    }

    [RootCgroupFact("v2")]
    public void RealV2_CreateAddFreezeKillAndDestroy_OnTheCgroup2Mount()
    {
        var mount = Layout.UnifiedMount!;
        var rootSubtree = File.ReadAllText($"{mount}/cgroup.subtree_control");
        Track(new V2Manager(_parent, mount));
        var m = Track(new V2Manager($"{_parent}/ctr", mount));
        m.Create(new CgroupResources());
        Assert.Equal(rootSubtree, File.ReadAllText($"{mount}/cgroup.subtree_control"));

        var p = StartWaiting("exec sleep 30");
        m.AddProcess(p.Id);
        Go(p);
        Eventually(() => Comm(p.Id) == "sleep", "the shell to exec sleep inside the cgroup");
        Assert.Equal([p.Id], m.Processes());
        Assert.Contains($"0::/{_parent}/ctr", File.ReadAllText($"/proc/{p.Id}/cgroup"));

        m.Freeze();
        Assert.Contains("frozen 1", File.ReadAllText($"{m.Dir}/cgroup.events"));
        m.Thaw();
        Assert.Contains("frozen 0", File.ReadAllText($"{m.Dir}/cgroup.events"));

        Assert.True(m.CanKill);
        m.KillAll();
        Assert.True(p.WaitForExit(5000));
        Assert.Equal(128 + 9, p.ExitCode);

        m.Destroy();
        Assert.False(Directory.Exists(m.Dir));
        new V2Manager(_parent, mount).Destroy();
        Assert.False(Directory.Exists($"{mount}/{_parent}"));
    }

    [RootCgroupFact("hybrid")]
    public void RealHybrid_Factory_JoinsBothAndKillsThroughCgroupKill()
    {
        Assert.Equal(CgroupMode.Hybrid, CgroupManagers.Layout.Mode);
        Track(CgroupManagers.Create(_parent));
        var m = Track(CgroupManagers.Create($"{_parent}/ctr"));
        Assert.IsType<HybridManager>(m);
        m.Create(new CgroupResources
        {
            MemoryLimit = 32 << 20,
            PidsLimit = 5,
            HugepageLimits = new Dictionary<string, ulong> { ["2MB"] = 0 },
        });

        var p = StartWaiting("exec sleep 30");
        m.AddProcess(p.Id);
        Go(p);
        Eventually(() => Comm(p.Id) == "sleep", "the shell to exec sleep inside the cgroup");
        var memory = $"{Layout.V1Mounts["memory"]}/{_parent}/ctr";
        var unified = $"{Layout.UnifiedMount}/{_parent}/ctr";
        Assert.Equal(p.Id.ToString(), File.ReadAllText($"{memory}/cgroup.procs").Trim());
        Assert.Equal(p.Id.ToString(), File.ReadAllText($"{unified}/cgroup.procs").Trim());
        Assert.Equal((32 << 20).ToString(), File.ReadAllText($"{memory}/memory.limit_in_bytes").Trim());
        var stats = m.Stats();
        Assert.Equal(1UL, stats.PidsCurrent);
        Assert.Equal(5UL, stats.PidsLimit);

        m.KillAll();
        Assert.True(p.WaitForExit(5000));
        Assert.Equal(128 + 9, p.ExitCode);

        m.Destroy();
        Assert.False(Directory.Exists(memory));
        Assert.False(Directory.Exists(unified));
    }
}
