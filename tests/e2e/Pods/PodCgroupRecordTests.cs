using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>The pod cgroup is decided once, at RunPodSandbox, and recorded: a daemon restarted
/// with another cgroup_root still finds, and removes, the cgroup the pod got.</summary>
[Collection(RegistryCollection.Name)]
public class PodCgroupRecordTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task PodCgroup_IsRecorded_AndRemovedAfterARestartWithAnotherCgroupRoot()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var root = Path.GetFileName(d.Dir);
        string podId;
        using (var c = d.Client())
        {
            var image = _registry.Image("busybox");
            await c.PullAsync(image);
            var pod = PodConfig("cgroup-record");
            podId = await c.RunPodAsync(pod);
            await c.StartNewAsync(podId, pod, Container("app", image, "sleep", "3600"));
            var status = await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId, Verbose = true });
            Assert.Equal($"/{root}/{podId}", JsonDocument.Parse(status.Info["info"]).RootElement.GetProperty("cgroupPath").GetString());
        }
        var podCgroup = $"/sys/fs/cgroup/memory/{root}/{podId}";
        Assert.True(Directory.Exists(podCgroup));

        await d.StopAsync();
        File.WriteAllText(d.ConfigFile, File.ReadAllText(d.ConfigFile).Replace($"cgroup_root = \"{root}\"", $"cgroup_root = \"{root}-changed\"", StringComparison.Ordinal));
        await d.StartAsync();
        using (var c = d.Client())
        {
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        Assert.False(Directory.Exists(podCgroup), $"{podCgroup} was left behind");
    }
}
