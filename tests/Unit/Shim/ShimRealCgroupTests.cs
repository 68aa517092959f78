using CriRuntime.Oci;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The real shim owns its container's cgroup: it writes updates there and into the
/// bundle, and removes the cgroup when a create fails after making it.</summary>
public sealed partial class ShimRealTests
{
    private readonly string _cgroup = "criruntime-unit-" + Guid.NewGuid().ToString("N")[..12];

    private static bool V1OrHybrid => Directory.Exists("/sys/fs/cgroup/memory");

    private string MemoryLimitFile => V1OrHybrid ? $"/sys/fs/cgroup/memory/{_cgroup}/memory.limit_in_bytes" : $"/sys/fs/cgroup/{_cgroup}/memory.max";

    private string MemoryDir => Path.GetDirectoryName(MemoryLimitFile)!;

    private Spec InCgroup(Spec s, long memoryLimit) =>
        s with { Linux = s.Linux! with { CgroupsPath = _cgroup, Resources = new LinuxResources { Memory = new LinuxMemory { Limit = memoryLimit } } } };

    [RootFact]
    public async Task Update_WritesTheContainersCgroup_AndTheBundlesConfigJson_AndFailsOnceExited()
    {
        WriteBundle(["sleep", "1000"], edit: s => InCgroup(s, 32 << 20));
        var (shimPid, _) = await CreateAsync();
        using var shim = PidFd.Open(shimPid);
        var client = new ShimClient(State);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Start })).Ok);
        Assert.Equal($"{32 << 20}", File.ReadAllText(MemoryLimitFile).Trim());

        var updated = await client.SendAsync(new ShimRequest { Op = ShimOps.Update, Resources = new LinuxResources { Memory = new LinuxMemory { Limit = 48 << 20 } } });

        Assert.True(updated.Ok, updated.Error);
        Assert.Equal($"{48 << 20}", File.ReadAllText(MemoryLimitFile).Trim());
        var spec = SpecFile.Load(Bundle);
        Assert.Equal(48 << 20, spec.Linux!.Resources!.Memory!.Limit);
        Assert.Equal(_cgroup, spec.Linux.CgroupsPath);

        var refused = await client.SendAsync(new ShimRequest { Op = ShimOps.Update, Resources = new LinuxResources { Cpu = new LinuxCpu { Shares = 1 } } });
        Assert.False(refused.Ok);
        Assert.Contains("linux.resources.cpu.shares", refused.Error);

        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Kill, Signal = 9 })).Ok);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Wait, Timeout = 10 })).Ok);
        var afterExit = await client.SendAsync(new ShimRequest { Op = ShimOps.Update, Resources = new LinuxResources { Memory = new LinuxMemory { Limit = 64 << 20 } } });
        Assert.False(afterExit.Ok);
        Assert.Equal("container e2e has exited", afterExit.Error);
        Assert.Equal(48 << 20, SpecFile.Load(Bundle).Linux!.Resources!.Memory!.Limit);
        Assert.True(shim.WaitExit(TimeSpan.FromSeconds(10)), "the shim outlived its container");
        Assert.False(Directory.Exists(MemoryDir), "the shim left its cgroup behind");
    }

    [RootFact]
    public async Task Create_ThatFailsAfterMakingTheCgroup_RemovesIt()
    {
        // A new user namespace without mappings is refused once the cgroup exists (at the spawn).
        WriteBundle(["true"], edit: s => InCgroup(s, 32 << 20) is var c
            ? c with { Linux = c.Linux! with { Namespaces = [.. c.Linux!.Namespaces!, new LinuxNamespace { Type = "user" }] } }
            : c);
        var psi = new System.Diagnostics.ProcessStartInfo(ShimPath(), ["create", "--id", "e2e", "--bundle", Bundle, "--state", State, "--log", Log])
        { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.Environment["CRIRUNTIME_NSEXEC"] = NsExecTests.Binary;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();

        Assert.Equal(1, p.ExitCode);
        Assert.Contains("linux.uidMappings", stderr);
        Assert.Contains("linux.uidMappings", ShimLog()); // the create error, then the undo steps ran
        Assert.False(Directory.Exists(MemoryDir), $"cgroup {_cgroup} left behind after a failed create");
    }
}
