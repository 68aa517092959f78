using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Images;

/// <summary>[images] pinned: reported to the kubelet, never removed.</summary>
[Collection(RegistryCollection.Name)]
public sealed class PinnedImageTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task PinnedImage_IsReportedPinned_AndNotRemoved()
    {
        using var daemon = new DaemonProcess();
        File.AppendAllText(daemon.ConfigFile, $"\n[images]\npinned = [\"{_registry.Image("busybox")}\"]\n");
        await daemon.StartAsync();
        using var cri = daemon.Client();

        var id = await cri.PullAsync(_registry.Image("busybox"));
        await cri.PullAsync(_registry.Image("multilayer"));
        Assert.True((await cri.StatusAsync(id))!.Pinned);
        Assert.False((await cri.StatusAsync(_registry.Image("multilayer")))!.Pinned);

        var e = await Assert.ThrowsAsync<RpcException>(() => cri.RemoveAsync(id));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("pinned", e.Status.Detail);
        await cri.RemoveAsync(_registry.Image("multilayer"));
        Assert.NotNull(await cri.StatusAsync(id));
        Assert.Single(daemon.Snapshots());
    }
}
