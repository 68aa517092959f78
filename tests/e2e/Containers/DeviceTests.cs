using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>ContainerConfig.devices: the host device appears at its container path, the device
/// cgroup lets the container use it (and no device it was not given), a missing host device
/// is refused naming the path.</summary>
[Collection(RegistryCollection.Name)]
public class DeviceTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task HostDevice_MappedToANewPath_IsReadable_OthersAreNot_MissingOnesRefused()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("devices");
        var podId = await c.RunPodAsync(pod);
        var config = Container("main", image, "sleep", "3600");
        config.Devices.Add(new Device { HostPath = "/dev/zero", ContainerPath = "/dev/myzero", Permissions = "rwm" });
        var id = await c.StartNewAsync(podId, pod, config);

        var read = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "head -c 4 /dev/myzero | od -An -tx1; stat -c '%t:%T' /dev/myzero" }, Timeout = 10 });
        Assert.Equal(0, read.ExitCode);
        Assert.Equal(["00 00 00 00", "1:5"], read.Stdout.ToStringUtf8().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        // A device node the container was not given (made with mknod, which the defaults allow) cannot be opened.
        var denied = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem" }, Timeout = 10 });
        Assert.NotEqual(0, denied.ExitCode);
        Assert.Contains("Operation not permitted", denied.Stderr.ToStringUtf8());

        var bad = Container("bad", image, "true");
        bad.Devices.Add(new Device { HostPath = "/dev/does-not-exist", ContainerPath = "/dev/x", Permissions = "r" });
        var e = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, bad));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("/dev/does-not-exist", e.Status.Detail);
        Assert.Contains("config.devices[0].host_path", e.Status.Detail);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
