using System.Globalization;
using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Containers.PrivilegedTests;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>/sys/fs/cgroup inside a container: its own cgroup at the root of every hierarchy,
/// laid out like the host's, read-only, so runtimes (JVM, Go, .NET, nginx) size themselves by
/// their limits. Asserted from inside with ExecSync.</summary>
[Collection(RegistryCollection.Name)]
public class CgroupfsTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private const long Limit = 64 * 1024 * 1024;

    private static async Task<(int Code, string Out, string Err)> Exec(CriClient c, string id, params string[] cmd)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { cmd }, Timeout = 30 });
        return (r.ExitCode, r.Stdout.ToStringUtf8(), r.Stderr.ToStringUtf8());
    }

    private static bool HostIsV1OrHybrid => Directory.Exists("/sys/fs/cgroup/memory");
    /// <summary>Depth below /sys/fs/cgroup of a child cgroup: below a hierarchy's directory on v1.</summary>
    private static string ChildDepth => HostIsV1OrHybrid ? "2" : "1";

    private static ContainerConfig Limited(string name, string image)
    {
        var config = KubeletContainer(name, image, privileged: false, null, "sleep", "3600");
        config.Linux.Resources.MemoryLimitInBytes = Limit;
        config.Linux.Resources.CpuPeriod = 100_000;
        config.Linux.Resources.CpuQuota = 50_000;
        return config;
    }

    /// <summary>A created container has no shim nor cgroup yet (the shim starts at
    /// StartContainer): an update then goes into its bundle, and the container starts with it.</summary>
    [Fact]
    public async Task UpdateContainerResources_BeforeStart_IsWhatTheContainerStartsWith()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("cgfs-update", p => KubeletPod(p, privileged: false));
        var id = await n.C.CreateAsync(podId, pod, Limited("app", n.Busybox));

        await n.C.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest
        {
            ContainerId = id,
            Linux = new LinuxContainerResources { MemoryLimitInBytes = 2 * Limit, CpuPeriod = 100_000, CpuQuota = 50_000 },
        });
        Assert.Equal(2 * Limit, (await n.C.StatusAsync(id)).Resources.Linux.MemoryLimitInBytes);
        await n.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        var limitFile = HostIsV1OrHybrid ? "/sys/fs/cgroup/memory/memory.limit_in_bytes" : "/sys/fs/cgroup/memory.max";
        Assert.Equal((2 * Limit).ToString(System.Globalization.CultureInfo.InvariantCulture), (await n.C.ExecOkAsync(id, "cat", limitFile)).Trim());
    }

    [Fact]
    public async Task Container_ReadsItsOwnLimits_FromAReadOnlySysFsCgroup()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("cgfs", p => KubeletPod(p, privileged: false));
        var id = await n.C.StartNewAsync(podId, pod, Limited("app", n.Busybox));

        if (HostIsV1OrHybrid)
        {
            Assert.Equal("67108864", (await n.C.ExecOkAsync(id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")).Trim());
            Assert.Equal("50000", (await n.C.ExecOkAsync(id, "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")).Trim());
            Assert.Equal("100000", (await n.C.ExecOkAsync(id, "cat", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")).Trim());
            // Laid out like the host's, with the same names (named hierarchies such as systemd aside).
            var inside = (await n.C.ExecOkAsync(id, "ls", "/sys/fs/cgroup")).Split('\n', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal);
            var host = Directory.EnumerateFileSystemEntries("/sys/fs/cgroup").Select(Path.GetFileName).Where(e => e != "systemd").Order(StringComparer.Ordinal);
            Assert.Equal(host, inside);
        }
        else
        {
            Assert.Equal("67108864", (await n.C.ExecOkAsync(id, "cat", "/sys/fs/cgroup/memory.max")).Trim());
            Assert.Equal("50000 100000", (await n.C.ExecOkAsync(id, "cat", "/sys/fs/cgroup/cpu.max")).Trim());
        }

        // Read-only: neither a limit nor the tmpfs holding the hierarchies can be written.
        var limitFile = HostIsV1OrHybrid ? "/sys/fs/cgroup/memory/memory.limit_in_bytes" : "/sys/fs/cgroup/memory.max";
        var (code, _, err) = await Exec(n.C, id, "sh", "-c", $"echo 1073741824 > {limitFile}");
        Assert.NotEqual(0, code);
        Assert.Contains("Read-only file system", err);
        (code, _, err) = await Exec(n.C, id, "mkdir", "/sys/fs/cgroup/x");
        Assert.NotEqual(0, code);
        Assert.Contains("Read-only file system", err);
        Assert.Equal("67108864", (await n.C.ExecOkAsync(id, "cat", limitFile)).Trim());
    }

    [Fact]
    public async Task UpdateContainerResources_ReachesTheBundlesConfigJson_AndIsWhatTheContainerSees()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("cgupd", p => KubeletPod(p, privileged: false));
        var id = await n.C.StartNewAsync(podId, pod, Limited("app", n.Busybox));
        const long updated = 96 * 1024 * 1024;

        // As the kubelet sends it (the whole resources, not a diff), a new memory limit and quota.
        var resources = Limited("app", n.Busybox).Linux.Resources;
        resources.MemoryLimitInBytes = updated;
        resources.CpuQuota = 30_000;
        await n.C.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest { ContainerId = id, Linux = resources });

        // The shim rewrote the bundle: config.json carries the new limits, and keeps the rest.
        var configJson = Path.Combine(n.D.Root, "containers", id, "bundle", "config.json");
        using (var spec = JsonDocument.Parse(File.ReadAllBytes(configJson)))
        {
            var r = spec.RootElement.GetProperty("linux").GetProperty("resources");
            Assert.Equal(updated, r.GetProperty("memory").GetProperty("limit").GetInt64());
            Assert.Equal(30_000, r.GetProperty("cpu").GetProperty("quota").GetInt64());
            Assert.Equal(100_000, r.GetProperty("cpu").GetProperty("period").GetInt64());
            Assert.Equal("sleep", spec.RootElement.GetProperty("process").GetProperty("args")[0].GetString());
        }

        // And that is what the container reads of its own cgroup, from inside.
        var (memoryFile, cpuFile, cpu) = HostIsV1OrHybrid
            ? ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "30000")
            : ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max", "30000 100000");
        Assert.Equal(updated.ToString(CultureInfo.InvariantCulture), (await n.C.ExecOkAsync(id, "cat", memoryFile)).Trim());
        Assert.Equal(cpu, (await n.C.ExecOkAsync(id, "cat", cpuFile)).Trim());
        Assert.Equal(updated, (await n.C.StatusAsync(id)).Resources.Linux.MemoryLimitInBytes);

        // Once the container has exited there is nothing to update: FailedPrecondition, nothing rewritten.
        await n.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 0 });
        resources.MemoryLimitInBytes = 128 * 1024 * 1024;
        var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
            await n.C.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest { ContainerId = id, Linux = resources }));
        Assert.Equal(Grpc.Core.StatusCode.FailedPrecondition, e.StatusCode);
        using var after = JsonDocument.Parse(File.ReadAllBytes(configJson));
        Assert.Equal(updated, after.RootElement.GetProperty("linux").GetProperty("resources").GetProperty("memory").GetProperty("limit").GetInt64());
    }

    [Fact]
    public async Task ProcSelfCgroup_AndSysFsCgroup_Agree_AndNoOtherCgroupIsVisible()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("cgsee", p => KubeletPod(p, privileged: false));
        var (otherPodId, otherPod) = await n.RunPodAsync("cgother", p => KubeletPod(p, privileged: false));
        var id = await n.C.StartNewAsync(podId, pod, Limited("one", n.Busybox));
        var sibling = await n.C.StartNewAsync(podId, pod, Limited("two", n.Busybox));
        var stranger = await n.C.StartNewAsync(otherPodId, otherPod, Limited("three", n.Busybox));

        // Each hierarchy of /proc/self/cgroup is "/" (the cgroup namespace's root), and the directory
        // it names under /sys/fs/cgroup holds the container's own processes: its pid 1 is there.
        var lines = (await n.C.ExecOkAsync(id, "cat", "/proc/self/cgroup")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var checkedDirs = 0;
        foreach (var line in lines)
        {
            var parts = line.Split(':', 3);
            Assert.True(parts[2] == "/", line);
            if (parts[1].StartsWith("name=", StringComparison.Ordinal)) continue;
            var dir = parts[1] == "" ? (HostIsV1OrHybrid ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup") : $"/sys/fs/cgroup/{parts[1]}";
            var procs = (await n.C.ExecOkAsync(id, "cat", $"{dir}/cgroup.procs")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains("1", procs);
            checkedDirs++;
        }
        Assert.True(checkedDirs >= (HostIsV1OrHybrid ? 3 : 1), string.Join('\n', lines));

        // Nothing of the sibling, the other pod, the pod cgroup or the host's tree: no directory
        // below any hierarchy's root, and none of their names anywhere.
        var dirs = (await n.C.ExecOkAsync(id, "find", "/sys/fs/cgroup", "-mindepth", ChildDepth, "-type", "d")).Trim();
        Assert.Equal("", dirs);
        var all = await n.C.ExecOkAsync(id, "find", "/sys/fs/cgroup");
        foreach (var name in new[] { sibling, stranger, podId, otherPodId, Path.GetFileName(n.D.Dir) })
            Assert.DoesNotContain(name, all);
        // The sibling sees its own limit file as well, not the first container's cgroup.
        Assert.Contains("1", (await n.C.ExecOkAsync(sibling, "cat", HostIsV1OrHybrid ? "/sys/fs/cgroup/memory/cgroup.procs" : "/sys/fs/cgroup/cgroup.procs")).Split('\n'));
    }

    [Fact]
    public async Task PodUserNamespace_Container_ReadsItsOwnLimits()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var userns = new UserNamespace
        {
            Mode = NamespaceMode.Pod,
            Uids = { new IDMapping { ContainerId = 0, HostId = 200000, Length = 65536 } },
            Gids = { new IDMapping { ContainerId = 0, HostId = 200000, Length = 65536 } },
        };
        var (podId, pod) = await n.RunPodAsync("cguserns", p =>
        {
            KubeletPod(p, privileged: false);
            p.Linux.SecurityContext.NamespaceOptions.UsernsOptions = userns;
        });
        var config = Limited("app", n.Busybox);
        config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = userns;
        var id = await n.C.StartNewAsync(podId, pod, config);

        Assert.Equal("0", (await n.C.ExecOkAsync(id, "id", "-u")).Trim());
        var limitFile = HostIsV1OrHybrid ? "/sys/fs/cgroup/memory/memory.limit_in_bytes" : "/sys/fs/cgroup/memory.max";
        Assert.Equal("67108864", (await n.C.ExecOkAsync(id, "cat", limitFile)).Trim());
        Assert.Equal("", (await n.C.ExecOkAsync(id, "find", "/sys/fs/cgroup", "-mindepth", ChildDepth, "-type", "d")).Trim());
        var (code, _, err) = await Exec(n.C, id, "sh", "-c", $"echo 1073741824 > {limitFile}");
        Assert.NotEqual(0, code);
        Assert.Contains("Read-only file system", err);
    }
}
