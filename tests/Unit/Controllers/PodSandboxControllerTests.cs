using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Namespaces;
using CriRuntime.Pods;
using CriRuntime.State;

namespace CriRuntime.Tests.Unit.Controllers;

/// <summary>The pod controller over fakes: the order of RunPodSandbox's steps, the undo of every
/// completed step when a later one fails, and idempotent stop and remove.</summary>
public sealed class PodSandboxControllerTests : IDisposable
{
    private readonly ControllerFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>Every step there is: own network, IPC and UTS namespaces with sysctls, pod-level
    /// limits on our pod cgroup, a shared pid namespace (pod init).</summary>
    private static PodSandboxPlan FullPlan(Action<PodSandboxConfig>? edit = null) => ControllerFixture.Plan(
        c => { c.Linux.SecurityContext.NamespaceOptions.Pid = NamespaceMode.Pod; edit?.Invoke(c); },
        limits: new CgroupResources { CpuShares = 512 },
        sysctls: new Dictionary<NamespaceKind, IReadOnlyList<KeyValuePair<string, string>>>
        {
            [NamespaceKind.Net] = [new("net.ipv4.ip_forward", "1")],
            [NamespaceKind.Ipc] = [new("kernel.shmmax", "1000")],
        });

    [Fact]
    public async Task Run_MakesNamespacesThenCgroupsThenPodInitThenNetwork_AndRecordsThePod()
    {
        var id = await _f.PodController.RunAsync(FullPlan(), CancellationToken.None);

        Assert.Equal(
        [
            "pin net", "sysctl net.ipv4.ip_forward=1",
            "pin uts", "hostname web",
            "pin ipc", "sysctl kernel.shmmax=1000",
            "cgroup create /criruntime/ID",
            "init start", "cgroup create /criruntime/ID/pod-init", "cgroup add 4242 /criruntime/ID/pod-init",
            "pin pid from /proc/4242/ns/pid", "init running?",
            "network setup",
        ], _f.Log.Named);
        var pod = _f.Pods.Find(id)!;
        Assert.Equal(PodState.Ready, pod.State);
        Assert.Equal($"/criruntime/{id}", pod.CgroupPath);
        Assert.Equal(FakePodInit_Pid, pod.PodInitPid);
        Assert.Equal(["10.88.0.7"], pod.Ips);
        Assert.Equal("fake-net", pod.NetworkName);
        Assert.NotNull(pod.NetNs);
        Assert.NotNull(pod.PidNs);
        Assert.Equal("web\n", File.ReadAllText(Path.Combine(pod.Dir, "hostname")));
        Assert.Contains("10.88.0.7", File.ReadAllText(Path.Combine(pod.Dir, "hosts")));
    }

    private const int FakePodInit_Pid = FakePodInit.Pid;

    public static TheoryData<string> FailingSteps() =>
    [
        "pin net", "sysctl net.", "pin uts", "hostname", "pin ipc", "sysctl kernel.",
        "cgroup create /criruntime/", "init start", "cgroup add", "pin pid", "network setup",
    ];

    [Theory]
    [MemberData(nameof(FailingSteps))]
    public async Task Run_WhenAStepFails_UndoesEveryCompletedStep_AndLeavesNoPod(string failing)
    {
        _f.Log.FailAt = failing;

        await Assert.ThrowsAnyAsync<Exception>(() => _f.PodController.RunAsync(FullPlan(), CancellationToken.None));

        Assert.Empty(_f.Log.Live);
        Assert.Empty(_f.Pods.All);
        Assert.Empty(Directory.GetDirectories(_f.Pods.Dir));
        var podStates = Path.Combine(_f.Config.State, "pods");
        Assert.True(!Directory.Exists(podStates) || Directory.GetDirectories(podStates).Length == 0);
    }

    [Fact]
    public async Task Run_WhenThePodInitExitsDuringTheRun_IsUnavailable_AndUndoesInReverseOrder()
    {
        _f.PodInit.Running = false;

        var e = await Assert.ThrowsAsync<CriException>(() => _f.PodController.RunAsync(FullPlan(), CancellationToken.None));

        Assert.Equal(ErrorKind.Unavailable, e.Kind);
        var undo = _f.Log.Named.SkipWhile(s => s != "init running?").Skip(1).ToList();
        Assert.Equal(
        [
            "unpin pid", "cgroup destroy /criruntime/ID/pod-init", "cgroup destroy /criruntime/ID", "init stop",
            "cgroup destroy /criruntime/ID", "unpin ipc", "unpin uts", "unpin net",
        ], undo);
        Assert.Empty(_f.Log.Live);
    }

    [Fact]
    public async Task Run_ASysctlTheKernelRefuses_IsInvalidArgumentNamingIt()
    {
        _f.Log.FailAt = "sysctl net.";

        var e = await Assert.ThrowsAsync<CriException>(() => _f.PodController.RunAsync(FullPlan(), CancellationToken.None));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("net.ipv4.ip_forward=1", e.Message);
    }

    [Fact]
    public async Task Run_InTheHostNetwork_PinsNoNetworkOrUtsNamespace_AndCallsNoCni()
    {
        var plan = ControllerFixture.Plan(c => c.Linux.SecurityContext.NamespaceOptions.Network = NamespaceMode.Node) with { HostnameFile = "node1" };

        var id = await _f.PodController.RunAsync(plan, CancellationToken.None);

        Assert.Equal(["pin ipc"], _f.Log.Named);
        var pod = _f.Pods.Find(id)!;
        Assert.Null(pod.NetNs);
        Assert.Equal("node1\n", File.ReadAllText(Path.Combine(pod.Dir, "hostname")));
    }

    [Fact]
    public async Task Run_WithAKubeletCgroupParent_LeavesThePodCgroupToTheKubelet()
    {
        var plan = ControllerFixture.Plan(c => c.Linux.CgroupParent = "/kubepods/pod-uid-1/", limits: new CgroupResources { CpuShares = 512 });

        var id = await _f.PodController.RunAsync(plan, CancellationToken.None);

        Assert.DoesNotContain(_f.Log.Named, s => s.StartsWith("cgroup", StringComparison.Ordinal));
        Assert.Equal("/kubepods/pod-uid-1", _f.Pods.Find(id)!.CgroupPath);
    }

    [Fact]
    public async Task Run_Retried_GetsTheSamePod()
    {
        var first = await _f.PodController.RunAsync(ControllerFixture.Plan(), CancellationToken.None);
        var steps = _f.Log.Steps.Count;

        var second = await _f.PodController.RunAsync(ControllerFixture.Plan(), CancellationToken.None);

        Assert.Equal(first, second);
        Assert.Equal(steps, _f.Log.Steps.Count);
    }

    [Fact]
    public async Task Stop_MarksThePodNotReady_StopsThePodInit_AndTearsTheNetworkDown()
    {
        var id = await _f.PodController.RunAsync(FullPlan(), CancellationToken.None);
        _f.Log.Steps.Clear();

        await _f.PodController.StopAsync(id, CancellationToken.None);

        Assert.Equal(PodState.NotReady, _f.Pods.Find(id)!.State);
        Assert.Equal(["init stop", "unpin pid", "network teardown", "unpin net"], _f.Log.Named);
    }

    /// <summary>The pod's /dev/shm: one tmpfs of the annotation's size, recorded for its
    /// containers to bind, unmounted at stop; the host's on the host's IPC namespace.</summary>
    [Fact]
    public async Task Run_MountsThePodsShmTmpfs_OfTheAnnotationsSize_AndStopUnmountsIt()
    {
        var id = await _f.PodController.RunAsync(FullPlan(c => c.Annotations["shm-size.criruntime.io/pod"] = "16Mi"), CancellationToken.None);

        var shm = Path.Combine(_f.Pods.PodDir(id), "shm");
        Assert.Equal(shm, _f.Pods.Find(id)!.Shm);
        Assert.Contains($"mount shm {shm} tmpfs 0xe mode=1777,size=16777216", _f.HostKernel.Calls);
        Assert.DoesNotContain(_f.HostKernel.Calls, c => c.StartsWith("umount2", StringComparison.Ordinal));

        await _f.PodController.StopAsync(id, CancellationToken.None);
        Assert.Equal($"umount2 {shm} 2", _f.HostKernel.Calls[^1]);

        var host = await _f.PodController.RunAsync(FullPlan(c => { c.Metadata.Name = "host-ipc"; c.Linux.SecurityContext.NamespaceOptions.Ipc = NamespaceMode.Node; }), CancellationToken.None);
        Assert.Equal("/dev/shm", _f.Pods.Find(host)!.Shm);
    }

    [Fact]
    public async Task Stop_IsIdempotent_WhenThePodIsStoppedOrGone()
    {
        var id = await _f.PodController.RunAsync(FullPlan(), CancellationToken.None);
        await _f.PodController.StopAsync(id, CancellationToken.None);

        await _f.PodController.StopAsync(id, CancellationToken.None);
        await _f.PodController.StopAsync("no-such-pod", CancellationToken.None);

        Assert.Equal(PodState.NotReady, _f.Pods.Find(id)!.State);
    }

    [Fact]
    public async Task Remove_ReleasesEverythingThePodHeld_AndForgetsIt()
    {
        var id = await _f.PodController.RunAsync(FullPlan(), CancellationToken.None);

        await _f.PodController.RemoveAsync(id, CancellationToken.None);

        Assert.Empty(_f.Log.Live);
        Assert.Null(_f.Pods.Find(id));
        Assert.False(Directory.Exists(_f.Pods.PodDir(id)));
        Assert.False(Directory.Exists(_f.PodController.StateDir(id)));
    }

    [Fact]
    public async Task Remove_IsIdempotent_WhenThePodIsGone()
    {
        var id = await _f.PodController.RunAsync(ControllerFixture.Plan(), CancellationToken.None);
        await _f.PodController.RemoveAsync(id, CancellationToken.None);
        var steps = _f.Log.Steps.Count;

        await _f.PodController.RemoveAsync(id, CancellationToken.None);

        Assert.Equal(steps, _f.Log.Steps.Count);
    }

    [Fact]
    public async Task Remove_StopsAndRemovesThePodsContainers()
    {
        var podId = await _f.PodController.RunAsync(ControllerFixture.Plan(), CancellationToken.None);
        var containerId = await _f.ContainerController.CreateAsync(ContainerControllerTests.Request(podId), _f.Pods.Find(podId)!, CancellationToken.None);
        await _f.ContainerController.StartAsync(containerId, "", CancellationToken.None);

        await _f.PodController.RemoveAsync(podId, CancellationToken.None);

        Assert.Null(_f.Containers.Find(containerId));
        Assert.Empty(_f.Log.Live);
    }

    [Fact]
    public async Task UpdateResources_OfAPodWhoseCgroupIsOurs_WritesItLive_AndTheRecordKeepsWhatIsInForce()
    {
        var id = await _f.PodController.RunAsync(ControllerFixture.Plan(), CancellationToken.None);
        _f.Log.Steps.Clear();
        var resources = new LinuxContainerResources { CpuShares = 256, MemoryLimitInBytes = 64 << 20 };

        await _f.PodController.UpdateResourcesAsync(id, resources, new CgroupResources { CpuShares = 256 }, null, CancellationToken.None);

        Assert.Equal(["cgroup create /criruntime/ID"], _f.Log.Named);
        Assert.Equal(resources, _f.Pods.Find(id)!.Resources!.ToCri());
    }

    [Fact]
    public async Task UpdateResources_OfAPodInTheKubeletsCgroup_OnlyRecordsThem()
    {
        var id = await _f.PodController.RunAsync(ControllerFixture.Plan(c => c.Linux.CgroupParent = "/kubepods/podx"), CancellationToken.None);
        _f.Log.Steps.Clear();

        await _f.PodController.UpdateResourcesAsync(id, new LinuxContainerResources { CpuShares = 256 }, new CgroupResources { CpuShares = 256 },
            new LinuxContainerResources { CpuShares = 10 }, CancellationToken.None);

        Assert.Empty(_f.Log.Steps);
        Assert.Equal(256, _f.Pods.Find(id)!.Resources!.CpuShares);
        Assert.Equal(10, _f.Pods.Find(id)!.Overhead!.CpuShares);
    }

    private static PodSandboxPlan QuotaPlan(string quota) =>
        ControllerFixture.Plan(c => c.Annotations[CriRuntime.Storage.DiskQuota.PodAnnotation] = quota);

    [Fact]
    public async Task Run_WithAPodDiskQuota_MakesThePodVolumeFirst_AndRemoveReleasesItAfterTheContainers()
    {
        var id = await _f.PodController.RunAsync(QuotaPlan("128Mi"), CancellationToken.None);
        var pod = _f.Pods.Find(id)!;
        Assert.Equal("volume create 134217728", _f.Log.Steps[0]);
        Assert.Equal(128UL << 20, pod.Volume!.SizeBytes);
        var c = await _f.ContainerController.CreateAsync(ContainerControllerTests.Request(id), pod, CancellationToken.None);
        Assert.StartsWith(Path.Combine(pod.Volume.MountPoint, "layers"), _f.Containers.Find(c)!.LayerDir);

        await _f.PodController.RemoveAsync(id, CancellationToken.None);

        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("volume", StringComparison.Ordinal));
        Assert.True(_f.Log.Steps.IndexOf("rootfs unmount") < _f.Log.Steps.IndexOf("volume release"));
    }

    [Fact]
    public async Task Run_WithABadPodDiskQuota_IsInvalidArgumentNamingTheAnnotation_AndMakesNothing()
    {
        var e = await Assert.ThrowsAsync<CriException>(() => _f.PodController.RunAsync(QuotaPlan("huge"), CancellationToken.None));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(CriRuntime.Storage.DiskQuota.PodAnnotation, e.Message);
        Assert.Empty(_f.Log.Steps);
        Assert.Empty(_f.Pods.All);
    }

    [Fact]
    public async Task Run_WithAPodDiskQuota_WhenALaterStepFails_ReleasesThePodVolume()
    {
        _f.Log.FailAt = "pin net";

        await Assert.ThrowsAnyAsync<Exception>(() => _f.PodController.RunAsync(QuotaPlan("128Mi"), CancellationToken.None));

        Assert.Contains("volume release", _f.Log.Steps);
        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("volume", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Create_InAPodWithAVolume_PutsAContainersOwnVolumeImageInsideIt_NoLargerThanThePodQuota()
    {
        var id = await _f.PodController.RunAsync(QuotaPlan("128Mi"), CancellationToken.None);
        var pod = _f.Pods.Find(id)!;
        var request = ContainerControllerTests.Request(id);
        request.Config.Annotations[CriRuntime.Storage.DiskQuota.ContainerAnnotationPrefix + "app"] = "1Gi";

        var c = _f.Containers.Find(await _f.ContainerController.CreateAsync(request, pod, CancellationToken.None))!;

        Assert.Equal(128UL << 20, c.Volume!.SizeBytes);
        Assert.StartsWith(pod.Volume!.MountPoint + "/", c.Volume.Image);
        Assert.Null(c.LayerDir);
    }
}
