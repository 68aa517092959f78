using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>Runtime handlers ([runtime.handlers.NAME], what RuntimeClass names): reported in
/// Status, each running its pods' containers with its own shim; unknown names refused.</summary>
[Collection(RegistryCollection.Name)]
public class RuntimeHandlerTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task ConfiguredHandler_RunsItsPodsWithItsShim_UnknownHandlerIsRefusedByName()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        // The handler's shim: a wrapper that notes each call, then runs the real shim.
        var calls = Path.Combine(d.Dir, "fast-shim-calls");
        var wrapper = Path.Combine(d.Dir, "fast-shim");
        var realShim = Path.Combine(Path.GetDirectoryName(Repo.Daemon)!, "criruntime-shim");
        File.WriteAllText(wrapper, $"#!/bin/sh\necho \"$1 $3\" >> {calls}\nexec {realShim} \"$@\"\n");
        File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.AppendAllText(d.ConfigFile, $"[runtime.handlers.fast]\nshim_path = \"{wrapper}\"\n");
        await d.StartAsync();
        using var c = d.Client();

        var status = await c.Runtime.StatusAsync(new StatusRequest());
        Assert.Equal(["", "criruntime", "fast"], status.RuntimeHandlers.Select(h => h.Name));
        Assert.All(status.RuntimeHandlers, h => Assert.True(h.Features.RecursiveReadOnlyMounts));

        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var fastPod = PodConfig("fast");
        var fastPodId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = fastPod, RuntimeHandler = "fast" })).PodSandboxId;
        Assert.Equal("fast", (await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = fastPodId })).Status.RuntimeHandler);
        var fastId = await c.StartNewAsync(fastPodId, fastPod, Container("main", image, "sleep", "3600"));
        Assert.Equal(ContainerState.ContainerRunning, (await c.StatusAsync(fastId)).State);
        Assert.Equal($"supervise {fastId}\n", File.ReadAllText(calls));

        // A pod of the default handler does not go through the wrapper.
        var plainPod = PodConfig("plain");
        var plainPodId = await c.RunPodAsync(plainPod);
        await c.StartNewAsync(plainPodId, plainPod, Container("main", image, "sleep", "3600"));
        Assert.Equal($"supervise {fastId}\n", File.ReadAllText(calls));

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = PodConfig("nope"), RuntimeHandler = "kata-nope" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Contains("kata-nope", e.Status.Detail);
        Assert.Contains("runtime_handler", e.Status.Detail);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = fastPodId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = plainPodId });
    }
}
