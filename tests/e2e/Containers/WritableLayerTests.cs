using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>ImageFsInfo's container_filesystems: the bytes and inodes of the containers'
/// writable layers, which the kubelet's eviction manager watches.</summary>
[Collection(RegistryCollection.Name)]
public class WritableLayerTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task ImageFsInfo_ContainerFilesystems_GrowWhenAContainerWritesAFile()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("writer");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", image, "sleep", "3600"));

        var before = Assert.Single((await c.Images.ImageFsInfoAsync(new ImageFsInfoRequest())).ContainerFilesystems);
        Assert.Equal(Path.Combine(d.Root, "containers"), before.FsId.Mountpoint);
        var write = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "mkdir /data && head -c 2097152 /dev/zero > /data/blob" }, Timeout = 30 });
        Assert.Equal(0, write.ExitCode);
        var after = Assert.Single((await c.Images.ImageFsInfoAsync(new ImageFsInfoRequest())).ContainerFilesystems);

        Assert.True(after.UsedBytes.Value >= before.UsedBytes.Value + 2097152, $"{before.UsedBytes.Value} -> {after.UsedBytes.Value}");
        Assert.True(after.InodesUsed.Value >= before.InodesUsed.Value + 2, $"{before.InodesUsed.Value} -> {after.InodesUsed.Value}");
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
