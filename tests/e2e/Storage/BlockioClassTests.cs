using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Storage;

/// <summary>Blockio classes from a goresctrl-format file ([storage] blockio_config_file), chosen
/// by the annotations the kubelet ecosystem uses: the class's throttle on rootfs (the container's
/// loop device) and its weight are what the container's cgroup holds; a reloaded class file
/// reaches a running container through UpdateContainerResources; an unknown class is refused.</summary>
[Collection(RegistryCollection.Name)]
public class BlockioClassTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private static string ClassFile(DaemonProcess d) => Path.Combine(d.Dir, "etc", "blockio.yaml");

    private static Task<TestNode> StartAsync(RegistryFixture registry, string classes) => TestNode.StartAsync(registry, d =>
    {
        File.WriteAllText(ClassFile(d), classes);
        Directory.CreateDirectory(d.DropInDir);
        File.WriteAllText(Path.Combine(d.DropInDir, "50-blockio.toml"), $"[storage]\nblockio_config_file = \"{ClassFile(d)}\"\n");
    });

    private static ContainerConfig WithQuota(ContainerConfig c)
    {
        c.Annotations[$"disk-quota.criruntime.io/container.{c.Metadata.Name}"] = "128Mi";
        return c;
    }

    private static async Task<double> DirectWriteAsync(CriClient c, string id, string file)
    {
        var watch = Stopwatch.StartNew();
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "dd", "if=/dev/zero", $"of={file}", "bs=1048576", "count=20", "oflag=direct" }, Timeout = 60 });
        Assert.True(r.ExitCode == 0, r.Stderr.ToStringUtf8());
        return watch.Elapsed.TotalSeconds;
    }

    private static async Task<string> ReadAsync(CriClient c, string id, string file)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "cat", file }, Timeout = 10 });
        Assert.True(r.ExitCode == 0, r.Stderr.ToStringUtf8());
        return r.Stdout.ToStringUtf8().Trim();
    }

    /// <summary>Whether this host's blkio controller has a proportional weight (the bfq I/O
    /// scheduler, or cfq on old kernels): a kernel built without bfq has neither file.</summary>
    private static bool HostHasBlkioWeights() =>
        File.Exists("/sys/fs/cgroup/blkio/blkio.bfq.weight") || File.Exists("/sys/fs/cgroup/blkio/blkio.weight");

    [Fact]
    public async Task ClassByContainerAnnotation_ThrottlesRootfsWrites_SetsItsWeight_AndAReloadedClassAppliesLive()
    {
        var weights = HostHasBlkioWeights();
        string Classes(int weight, string bps) =>
            $"Classes:\n  slow:\n{(weights ? $"    - Weight: {weight}\n" : "")}    - Devices: [rootfs]\n      ThrottleWriteBps: {bps}\n" +
            "  weighted:\n    - Weight: 200\n";
        await using var node = await StartAsync(_registry, Classes(300, "2Mi"));
        var (c, image) = (node.C, node.Busybox);
        var (podId, pod) = await node.RunPodAsync("blockio");
        if (!weights)
        {
            // Without a proportional scheduler a class's weight cannot be held: refused, saying why.
            var weighted = WithQuota(Container("weighted", image, "sleep", "3600"));
            weighted.Annotations["io.kubernetes.cri.blockio-class"] = "weighted";
            var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.StartNewAsync(podId, pod, weighted));
            Assert.Equal(Grpc.Core.StatusCode.FailedPrecondition, refused.StatusCode);
            Assert.Contains("blockIO.weight", refused.Status.Detail);
            Assert.Contains("no proportional I/O scheduler", refused.Status.Detail);
        }
        var config = WithQuota(Container("app", image, "sleep", "3600"));
        config.Annotations["io.kubernetes.cri.blockio-class"] = "slow";
        var id = await c.StartNewAsync(podId, pod, config);

        Assert.InRange(await DirectWriteAsync(c, id, "/a"), 8.5, 12.5);
        // What the container sees of its own cgroup (v1 and hybrid: the blkio hierarchy).
        if (weights) Assert.Equal("300", await ReadAsync(c, id, "/sys/fs/cgroup/blkio/blkio.bfq.weight"));
        Assert.EndsWith(" 2097152", await ReadAsync(c, id, "/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device"));

        // The class file changes and the daemon reloads it; the next update re-derives the class.
        File.WriteAllText(ClassFile(node.D), Classes(500, "8Mi"));
        node.D.Signal(1);
        await Observability.ReloadTests.WaitForOutputAsync(node.D, "config reloaded: storage.blockio_classes");
        await c.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest { ContainerId = id, Linux = new LinuxContainerResources() });

        Assert.InRange(await DirectWriteAsync(c, id, "/b"), 1.5, 4);
        if (weights) Assert.Equal("500", await ReadAsync(c, id, "/sys/fs/cgroup/blkio/blkio.bfq.weight"));
    }

    [Fact]
    public async Task ClassByPodAnnotation_UnifiedIoMaxStillWinsOverIt()
    {
        await using var node = await StartAsync(_registry, "Classes:\n  slow:\n    - Devices: [rootfs]\n      ThrottleWriteBps: 1Mi\n      ThrottleReadBps: 3Mi\n");
        var (c, image) = (node.C, node.Busybox);
        var (podId, pod) = await node.RunPodAsync("blockiopod", p => p.Annotations["blockio.resources.beta.kubernetes.io/pod"] = "slow");
        var config = WithQuota(Container("app", image, "sleep", "3600"));
        config.Linux = new LinuxContainerConfig { Resources = new LinuxContainerResources { Unified = { ["io.max"] = "rootfs wbps=2097152" } } };
        var id = await c.StartNewAsync(podId, pod, config);

        Assert.EndsWith(" 2097152", await ReadAsync(c, id, "/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device"));
        Assert.EndsWith(" 3145728", await ReadAsync(c, id, "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"));
    }

    [Fact]
    public async Task AnUnknownClass_IsInvalidArgumentNamingTheAnnotation()
    {
        await using var node = await StartAsync(_registry, "Classes:\n  slow:\n    - Weight: 100\n");
        var (c, image) = (node.C, node.Busybox);
        var (podId, pod) = await node.RunPodAsync("blockiobad");
        var config = Container("app", image, "true");
        config.Annotations["io.kubernetes.cri.blockio-class"] = "turbo";

        var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.CreateAsync(podId, pod, config));

        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("io.kubernetes.cri.blockio-class", e.Status.Detail);
        Assert.Contains("'turbo'", e.Status.Detail);
    }
}
