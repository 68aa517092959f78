using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.PartitionView;

/// <summary>The partition /proc view: a pod that asks for it (annotation, handler or node-wide)
/// gets Debian's lxcfs's files over its /proc and /sys ones, so free, nproc and uptime inside show
/// the partition, not the host. Asserted from inside the container, with kubelet-shaped requests.</summary>
[Collection(RegistryCollection.Name)]
public class ProcViewTests(RegistryWithImages fixture)
{
    private const string Annotation = "partition-view.criruntime.io/proc";
    private readonly RegistryFixture _registry = fixture.Registry;

    private static long MemTotalKb(string meminfo) =>
        long.Parse(meminfo.Split('\n').First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<(string Pod, string Container)> StartAsync(TestNode node, string name, IReadOnlyDictionary<string, string> annotations,
        long memoryLimit, long cpuQuota, string handler = "", string? image = null)
    {
        image ??= node.Busybox;
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs"), Annotations = annotations };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = (await node.C.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = sandbox, RuntimeHandler = handler })).PodSandboxId;
        node.Track(podId);
        var imageId = (await node.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image } })).Image.Id;
        var config = Kubelet.Container(pod, "app", imageId, image, ["sleep", "3600"]);
        config.Linux.Resources.MemoryLimitInBytes = memoryLimit;
        config.Linux.Resources.CpuQuota = cpuQuota;
        var id = await node.C.StartNewAsync(podId, sandbox, config);
        return (podId, id);
    }

    [Fact]
    public async Task APodThatAsks_SeesItsMemoryLimitCpuQuotaAndUptime_InProcAndSys_AndAPodThatDoesNotSeesTheHost()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (_, viewed) = await StartAsync(node, "vps", new Dictionary<string, string> { [Annotation] = "true" }, 64 << 20, 100000);
        var (_, plain) = await StartAsync(node, "plain", new Dictionary<string, string>(), 64 << 20, 100000);

        Assert.Equal(64 * 1024, MemTotalKb(await node.C.ExecOkAsync(viewed, "cat", "/proc/meminfo")));
        // top reads /proc/meminfo ("Mem: 1234K used, 64302K free, ..."): used + free is the limit.
        // (busybox free asks sysinfo(2), which no FUSE file can answer.)
        var mem = (await node.C.ExecOkAsync(viewed, "top", "-bn1")).Split('\n').First(l => l.StartsWith("Mem:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(65536, long.Parse(mem[1].TrimEnd('K'), System.Globalization.CultureInfo.InvariantCulture) + long.Parse(mem[3].TrimEnd('K'), System.Globalization.CultureInfo.InvariantCulture));
        // One CPU's worth of quota: one CPU online (lxcfs --enable-cfs), what glibc's
        // sysconf(_SC_NPROCESSORS_ONLN) reads. (nproc asks sched_getaffinity: the cpuset's, not ours.)
        Assert.Equal("0", (await node.C.ExecOkAsync(viewed, "cat", "/sys/devices/system/cpu/online")).Trim());
        // The partition's uptime: since its pid namespace's init started, not the host's boot.
        var uptime = double.Parse((await node.C.ExecOkAsync(viewed, "cat", "/proc/uptime")).Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        var hostUptime = double.Parse(File.ReadAllText("/proc/uptime").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(uptime < 120 && uptime < hostUptime - 1, $"container uptime {uptime} s, host {hostUptime} s");
        // Read-only: the container cannot write through to lxcfs.
        var write = await node.C.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = viewed, Cmd = { "sh", "-c", "echo x > /proc/meminfo" }, Timeout = 10 });
        Assert.NotEqual(0, write.ExitCode);

        var hostTotal = MemTotalKb(File.ReadAllText("/proc/meminfo"));
        Assert.Equal(hostTotal, MemTotalKb(await node.C.ExecOkAsync(plain, "cat", "/proc/meminfo")));
        Assert.Equal(File.ReadAllText("/sys/devices/system/cpu/online").Trim(), (await node.C.ExecOkAsync(plain, "cat", "/sys/devices/system/cpu/online")).Trim());

        var info = JsonDocument.Parse((await node.C.Runtime.StatusAsync(new StatusRequest { Verbose = true })).Info["lxcfs"]).RootElement;
        Assert.True(info.GetProperty("healthy").GetBoolean(), info.ToString());
        Assert.Equal(Path.Combine(node.D.State, "lxcfs"), info.GetProperty("mount").GetString());
    }

    /// <summary>The "done when": 64 MiB and half a CPU. procps free reads /proc/meminfo
    /// (busybox's asks sysinfo(2)); /proc/cpuinfo and /proc/stat list the CPUs the quota allows,
    /// rounded up (lxcfs --enable-cfs), and a container without the view lists the host's.</summary>
    [Fact]
    public async Task HalfACpuAnd64MiB_FreeShows64_CpuinfoAndStatShowOneCpu_WithoutTheViewTheHosts()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var procps = _registry.Image("procps");
        await node.C.PullAsync(procps);
        var (_, viewed) = await StartAsync(node, "vps", new Dictionary<string, string> { [Annotation] = "true" }, 64 << 20, 50000, image: procps);
        var (_, plain) = await StartAsync(node, "plain", new Dictionary<string, string>(), 64 << 20, 50000, image: procps);

        // procps free -m: "Mem:  total used free shared buff/cache available".
        var mem = (await node.C.ExecOkAsync(viewed, "free", "-m")).Split('\n').First(l => l.StartsWith("Mem:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("64", mem[1]);
        static int Processors(string cpuinfo) => cpuinfo.Split('\n').Count(l => l.StartsWith("processor", StringComparison.Ordinal));
        static int StatCpus(string stat) => stat.Split('\n').Count(l => l.Length > 3 && l.StartsWith("cpu", StringComparison.Ordinal) && char.IsAsciiDigit(l[3]));
        Assert.Equal(1, Processors(await node.C.ExecOkAsync(viewed, "cat", "/proc/cpuinfo")));
        Assert.Equal(1, StatCpus(await node.C.ExecOkAsync(viewed, "cat", "/proc/stat")));

        var hostCpus = Processors(File.ReadAllText("/proc/cpuinfo"));
        Assert.Equal(hostCpus, Processors(await node.C.ExecOkAsync(plain, "cat", "/proc/cpuinfo")));
        Assert.Equal(hostCpus, StatCpus(await node.C.ExecOkAsync(plain, "cat", "/proc/stat")));
        var hostMem = (await node.C.ExecOkAsync(plain, "free", "-m")).Split('\n').First(l => l.StartsWith("Mem:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(MemTotalKb(File.ReadAllText("/proc/meminfo")) / 1024, long.Parse(hostMem[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task AHandlerWithProcView_GivesItToEveryPodOfItsClass_UnlessThePodSaysFalse()
    {
        await using var node = await TestNode.StartAsync(_registry);
        File.WriteAllText(Path.Combine(node.D.DropInDir, "vps.toml"), "[runtime.handlers.vps]\nproc_view = true\n");
        await node.D.RestartAsync();

        var (_, vps) = await StartAsync(node, "vps", new Dictionary<string, string>(), 32 << 20, 0, handler: "vps");
        var (_, optedOut) = await StartAsync(node, "out", new Dictionary<string, string> { [Annotation] = "false" }, 32 << 20, 0, handler: "vps");

        Assert.Equal(32 * 1024, MemTotalKb(await node.C.ExecOkAsync(vps, "cat", "/proc/meminfo")));
        Assert.Equal(MemTotalKb(File.ReadAllText("/proc/meminfo")), MemTotalKb(await node.C.ExecOkAsync(optedOut, "cat", "/proc/meminfo")));
    }

    [Fact]
    public async Task ABadAnnotationValue_IsInvalidArgumentNamingIt_AndNoLxcfsIsNeededToSaySo()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = new KubePod { Name = "bad", LogRoot = Path.Combine(node.D.Dir, "logs"), Annotations = new Dictionary<string, string> { [Annotation] = "yes" } };

        var e = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Kubelet.Sandbox(pod) }));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(Annotation, e.Status.Detail);
        Assert.Empty((await node.C.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items);
    }

    [Fact]
    public async Task WithoutLxcfs_APodThatAsks_IsFailedPreconditionSayingWhy_AndOthersRun()
    {
        await using var node = await TestNode.StartAsync(_registry);
        File.WriteAllText(Path.Combine(node.D.DropInDir, "nolxcfs.toml"), $"[partition_view]\nlxcfs_path = \"{Path.Combine(node.D.Dir, "no-lxcfs")}\"\n");
        await node.D.RestartAsync();
        var pod = new KubePod { Name = "vps", LogRoot = Path.Combine(node.D.Dir, "logs"), Annotations = new Dictionary<string, string> { [Annotation] = "true" } };

        var e = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = Kubelet.Sandbox(pod) }));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("lxcfs_path", e.Status.Detail);
        var (_, plain) = await StartAsync(node, "plain", new Dictionary<string, string>(), 32 << 20, 0);
        Assert.Contains("MemTotal", await node.C.ExecOkAsync(plain, "cat", "/proc/meminfo"));
    }

    [Fact]
    public async Task LxcfsOutlivesADaemonRestart_AndIsAdopted_AndWhenItDiesANewOneServesNewAndRunningContainers()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (_, first) = await StartAsync(node, "vps", new Dictionary<string, string> { [Annotation] = "true" }, 48 << 20, 0);
        var pidFile = Path.Combine(node.D.State, "lxcfs.pid");
        var pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);

        await node.D.KillAsync();
        Assert.True(Directory.Exists($"/proc/{pid}"), "lxcfs died with the daemon");
        await node.D.StartAsync();

        Assert.Equal(48 * 1024, MemTotalKb(await node.C.ExecOkAsync(first, "cat", "/proc/meminfo")));
        var info = JsonDocument.Parse((await node.C.Runtime.StatusAsync(new StatusRequest { Verbose = true })).Info["lxcfs"]).RootElement;
        Assert.Equal(pid, info.GetProperty("pid").GetInt32());

        // lxcfs killed: the daemon starts another on the same mount point (a pod asking meanwhile
        // waits for it), and the running container gets the new one's files in place of the dead.
        using (var p = System.Diagnostics.Process.GetProcessById(pid)) { p.Kill(); p.WaitForExit(); }
        var (_, second) = await StartAsync(node, "vps2", new Dictionary<string, string> { [Annotation] = "true" }, 40 << 20, 0);
        Assert.Equal(40 * 1024, MemTotalKb(await node.C.ExecOkAsync(second, "cat", "/proc/meminfo")));
        Assert.NotEqual(pid, int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(48 * 1024, MemTotalKb(await node.C.ExecOkAsync(first, "cat", "/proc/meminfo")));
        Assert.Equal("0", (await node.C.ExecOkAsync(first, "cat", "/sys/devices/system/cpu/online")).Trim()[..1]);
        var write = await node.C.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = first, Cmd = { "sh", "-c", "echo x > /proc/meminfo" }, Timeout = 10 });
        Assert.NotEqual(0, write.ExitCode);
    }
}
