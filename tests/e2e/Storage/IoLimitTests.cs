using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Storage;

/// <summary>I/O rate limits on the pseudo-device rootfs (the container's own loop device), given
/// as io.max in the CRI unified map: applied at create, changed live, not felt by a neighbour.
/// On this hybrid host they are blkio.throttle.* files, which throttle direct I/O only.</summary>
[Collection(RegistryCollection.Name)]
public class IoLimitTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private static ContainerConfig Limited(ContainerConfig c, string? ioMax)
    {
        c.Annotations[$"disk-quota.criruntime.io/container.{c.Metadata.Name}"] = "128Mi";
        if (ioMax is not null)
            c.Linux = new LinuxContainerConfig { Resources = new LinuxContainerResources { Unified = { ["io.max"] = ioMax } } };
        return c;
    }

    /// <summary>Seconds a direct-I/O write of 20 MiB takes inside the container.</summary>
    private static async Task<double> DirectWriteAsync(CriClient c, string id, string file)
    {
        var watch = Stopwatch.StartNew();
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "dd", "if=/dev/zero", $"of={file}", "bs=1048576", "count=20", "oflag=direct" }, Timeout = 60 });
        Assert.True(r.ExitCode == 0, r.Stderr.ToStringUtf8());
        return watch.Elapsed.TotalSeconds;
    }

    [Fact]
    public async Task WriteLimitOnRootfs_Throttles_ChangesLive_AndSparesTheNeighbour()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (c, image) = (node.C, node.Busybox);
        var pod = PodConfig("iolimit");
        var podId = await c.RunPodAsync(pod);
        var slow = await c.StartNewAsync(podId, pod, Limited(Container("slow", image, "sleep", "3600"), "rootfs wbps=2097152"));
        var free = await c.StartNewAsync(podId, pod, Limited(Container("free", image, "sleep", "3600"), null));

        var limited = await DirectWriteAsync(c, slow, "/a");
        Assert.InRange(limited, 8.5, 12.5);
        Assert.True(await DirectWriteAsync(c, free, "/a") < 4, "the unlimited neighbour was slowed");

        await c.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest
        {
            ContainerId = slow,
            Linux = new LinuxContainerResources { Unified = { ["io.max"] = "rootfs wbps=8388608" } },
        });
        Assert.InRange(await DirectWriteAsync(c, slow, "/b"), 1.5, 4);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task ReadBpsAndWriteIopsLimitsOnRootfs_Throttle()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (c, image) = (node.C, node.Busybox);
        var pod = PodConfig("iolimitread");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Limited(Container("app", image, "sleep", "3600"), "rootfs rbps=2097152 wiops=100"));

        // 20 writes of 1 MiB: the IOPS limit hardly shows; then 20 MiB read back, direct: ~10 s.
        Assert.True(await DirectWriteAsync(c, id, "/a") < 4);
        var watch = Stopwatch.StartNew();
        var read = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "dd", "if=/a", "of=/dev/null", "bs=1048576", "iflag=direct" }, Timeout = 60 });
        Assert.True(read.ExitCode == 0, read.Stderr.ToStringUtf8());
        Assert.InRange(watch.Elapsed.TotalSeconds, 8.5, 12.5);

        // 1000 direct writes of 4 KiB at 100 IOPS: ~10 s.
        watch.Restart();
        var small = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "dd", "if=/dev/zero", "of=/b", "bs=4096", "count=1000", "oflag=direct" }, Timeout = 60 });
        Assert.True(small.ExitCode == 0, small.Stderr.ToStringUtf8());
        Assert.InRange(watch.Elapsed.TotalSeconds, 8.5, 12.5);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task RootfsLimit_WithoutADiskQuota_ThrottlesTheDiskUnderTheStorageRoot()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (c, image) = (node.C, node.Busybox);
        var (podId, pod) = await node.RunPodAsync("iolimitdisk");
        var config = Container("app", image, "sleep", "3600");
        config.Linux = new LinuxContainerConfig { Resources = new LinuxContainerResources { Unified = { ["io.max"] = "rootfs wbps=1048576" } } };

        if (DiskUnder(node.D.Root) is not { } disk)
        {
            // A storage root on overlay or tmpfs has no disk to throttle: refused, saying so.
            var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.CreateAsync(podId, pod, config));
            Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains("unified[io.max]", e.Status.Detail);
            return;
        }
        var id = await c.StartNewAsync(podId, pod, config);

        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "cat", "/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device" }, Timeout = 10 });
        Assert.Equal($"{disk} 1048576", r.Stdout.ToStringUtf8().Trim());
    }

    [Fact]
    public async Task PodWideWriteLimit_ThrottlesItsContainersOnV2_AndIsRefusedOnV1WhereThrottlesAreNotHierarchical()
    {
        await using var node = await TestNode.StartAsync(_registry);
        Assert.NotNull(DiskUnder(node.D.Root)); // this host's storage root is on a disk
        var (c, image) = (node.C, node.Busybox);
        var pod = PodConfig("iolimitpod");
        pod.Annotations["io-limit.criruntime.io/pod"] = "rootfs wbps=2097152";

        if (Directory.Exists("/sys/fs/cgroup/blkio"))
        {
            // A rule on a v1 parent leaves the children's I/O alone (tried: 20 MiB in 0.2 s).
            var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.RunPodAsync(pod));
            Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains("io-limit.criruntime.io/pod", e.Status.Detail);
            Assert.Contains("not hierarchical", e.Status.Detail);
            return;
        }
        var podId = await c.RunPodAsync(pod);
        node.Track(podId);
        var id = await c.StartNewAsync(podId, pod, Container("app", image, "sleep", "3600"));

        // No quota: the container writes through its overlay onto that disk, below the pod's cgroup.
        Assert.InRange(await DirectWriteAsync(c, id, "/a"), 8.5, 12.5);
    }

    /// <summary>MAJ:MIN of the whole disk under a directory, from mountinfo (the longest mount point
    /// above it) and sysfs (a partition's parent is its disk); null without a block device.</summary>
    private static string? DiskUnder(string dir)
    {
        var best = (Point: "", Dev: "");
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var f = line.Split(' ');
            var point = f[4].Replace("\\040", " ");
            if ((dir == point || dir.StartsWith(point.TrimEnd('/') + "/", StringComparison.Ordinal)) && point.Length >= best.Point.Length)
                best = (point, f[2]);
        }
        var sys = $"/sys/dev/block/{best.Dev}";
        if (best.Dev.StartsWith("0:", StringComparison.Ordinal) || !Directory.Exists(sys)) return null;
        if (!File.Exists(Path.Combine(sys, "partition"))) return best.Dev;
        var real = new DirectoryInfo(sys).ResolveLinkTarget(returnFinalTarget: true)!.FullName;
        return File.ReadAllText(Path.Combine(Path.GetDirectoryName(real)!, "dev")).Trim();
    }
}
