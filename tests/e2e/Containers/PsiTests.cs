using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>PSI in ContainerStats / PodSandboxStats: reported from the cgroup's own pressure
/// files where the kernel keeps them (cgroup2, including the cgroup2 mount of a hybrid host,
/// where tasks are tracked even with no controller enabled), and absent, never zeros, elsewhere.</summary>
[Collection(RegistryCollection.Name)]
public class PsiTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task Stats_CarryPsi_ExactlyWhenTheContainersCgroupHasPressureFiles()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("pressured");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("spin", image, "sh", "-c", "while :; do :; done"));

        var cgroup = $"{Path.GetFileName(d.Dir)}/{podId}/{id}";
        var pressureFile = new[] { $"/sys/fs/cgroup/unified/{cgroup}/cpu.pressure", $"/sys/fs/cgroup/{cgroup}/cpu.pressure" }.FirstOrDefault(File.Exists);
        var stats = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats;
        var podStats = (await c.Runtime.PodSandboxStatsAsync(new PodSandboxStatsRequest { PodSandboxId = podId })).Stats.Linux;
        if (pressureFile is null)
        {
            Assert.Null(stats.Cpu.Psi);
            Assert.Null(stats.Memory.Psi);
            Assert.Null(stats.Io);
            Assert.Null(podStats.Cpu.Psi);
        }
        else
        {
            // The kernel's own total, read just before, bounds ours from below (it only grows).
            var kernelTotal = ulong.Parse(File.ReadAllLines(pressureFile)[0].Split(' ').Single(f => f.StartsWith("total=", StringComparison.Ordinal))[6..]);
            stats = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = id })).Stats;
            Assert.NotNull(stats.Cpu.Psi.Some);
            Assert.True(stats.Cpu.Psi.Some.Total >= kernelTotal);
            Assert.InRange(stats.Cpu.Psi.Some.Avg10, 0, 100);
            Assert.NotNull(stats.Memory.Psi);
            Assert.NotNull(stats.Io.Psi);
            Assert.NotNull(podStats.Cpu.Psi);
        }
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
