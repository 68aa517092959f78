using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Storage;

/// <summary>Disk quotas through the real daemon: the file-backed volume (a loop-mounted ext4
/// image per container) bounds what a container writes, reports its use, survives the daemon's
/// death and leaves nothing behind.</summary>
[Collection(RegistryCollection.Name)]
public class DiskQuotaTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private const long MiB = 1 << 20;

    private static ContainerConfig WithQuota(ContainerConfig c, string quota)
    {
        c.Annotations[$"disk-quota.criruntime.io/container.{c.Metadata.Name}"] = quota;
        return c;
    }

    /// <summary>dd of <paramref name="mib"/> MiB into the container's writable layer: its exit code,
    /// stderr, and the size of what it wrote.</summary>
    private static async Task<(int Code, string Stderr, long Bytes)> WriteAsync(CriClient c, string id, string file, int mib)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest
        {
            ContainerId = id,
            Cmd = { "sh", "-c", $"dd if=/dev/zero of={file} bs=1048576 count={mib}; rc=$?; sync; wc -c < {file} >&2; exit $rc" },
            Timeout = 120,
        });
        var stderr = r.Stderr.ToStringUtf8();
        var bytes = long.Parse(stderr.Trim().Split('\n')[^1].Trim());
        return (r.ExitCode, stderr, bytes);
    }

    private static string? LoopDeviceOf(string image) =>
        Leaks.LoopDevices().Where(l => l.BackingFile == image).Select(l => l.Device).FirstOrDefault();

    [Fact]
    public async Task ContainerQuota_StopsWritesNearTheQuota_SparesTheNeighbour_HoldsAcrossDaemonKill9_AndLeavesNothingAfterRemoval()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("quota");
        string podId, limited, neighbour;
        string volumeImage, volumeMount;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            limited = await c.StartNewAsync(podId, pod, WithQuota(Container("limited", image, "sleep", "3600"), "64Mi"));
            neighbour = await c.StartNewAsync(podId, pod, Container("neighbour", image, "sleep", "3600"));
            volumeImage = Path.Combine(d.Root, "containers", limited, "volume.img");
            volumeMount = Path.Combine(d.Root, "containers", limited, "volume");

            // The volume: a loop device with direct I/O, its image file sparse.
            var loop = LoopDeviceOf(volumeImage);
            Assert.NotNull(loop);
            Assert.Equal("1", File.ReadAllText($"/sys/block/{Path.GetFileName(loop)}/loop/dio").Trim());
            Assert.True(Ns.IsMounted(volumeMount));

            var (code, stderr, bytes) = await WriteAsync(c, limited, "/big", 100);
            Assert.NotEqual(0, code);
            Assert.Contains("No space left on device", stderr);
            Assert.InRange(bytes, 56 * MiB, 64 * MiB);

            // The neighbour (no quota) writes past it.
            var n = await WriteAsync(c, neighbour, "/big", 80);
            Assert.Equal(0, n.Code);
            Assert.Equal(80 * MiB, n.Bytes);

            // Stats: from the volume's own accounting.
            var stats = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = limited })).Stats.WritableLayer;
            Assert.Equal(volumeMount, stats.FsId.Mountpoint);
            Assert.InRange((long)stats.UsedBytes.Value, bytes, 64 * MiB);
            Assert.True(stats.InodesUsed.Value >= 2);
            var fs = Assert.Single((await c.Images.ImageFsInfoAsync(new ImageFsInfoRequest())).ContainerFilesystems);
            Assert.True((long)fs.UsedBytes.Value >= bytes + 80 * MiB, $"container_filesystems {fs.UsedBytes.Value}");

            // Status verbose names the backend and the volume.
            var status = await c.Runtime.StatusAsync(new StatusRequest { Verbose = true });
            using var storage = JsonDocument.Parse(status.Info["storage"]);
            Assert.StartsWith("file", storage.RootElement.GetProperty("backend").GetString());
            var volume = Assert.Single(storage.RootElement.GetProperty("volumes").EnumerateArray());
            Assert.Equal(64 * MiB, volume.GetProperty("sizeBytes").GetInt64());
        }

        await d.KillAsync();
        await d.StartAsync();

        using (var c = d.Client())
        {
            // The quota holds after the restart: freed space is writable again, up to the quota.
            await c.ExecOkAsync(limited, "rm", "/big");
            var (code, stderr, bytes) = await WriteAsync(c, limited, "/again", 100);
            Assert.NotEqual(0, code);
            Assert.Contains("No space left on device", stderr);
            Assert.InRange(bytes, 56 * MiB, 64 * MiB);

            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }

        Assert.False(File.Exists(volumeImage));
        Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Split(' ')[4].StartsWith(d.Root, StringComparison.Ordinal));
        Assert.Null(LoopDeviceOf(volumeImage));
        Assert.DoesNotContain(Leaks.LoopDevices(), l => l.BackingFile.StartsWith(d.Dir, StringComparison.Ordinal));
    }

    [Fact]
    public async Task PodQuota_TwoContainersTogetherCannotPassIt_AndRemovalLeavesNothing()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("podquota");
        pod.Annotations["disk-quota.criruntime.io/pod"] = "128Mi";
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            var podId = await c.RunPodAsync(pod);
            var a = await c.StartNewAsync(podId, pod, Container("a", image, "sleep", "3600"));
            var b = await c.StartNewAsync(podId, pod, Container("b", image, "sleep", "3600"));

            var first = await WriteAsync(c, a, "/big", 100);
            Assert.Equal(0, first.Code);
            var second = await WriteAsync(c, b, "/big", 100);
            Assert.NotEqual(0, second.Code);
            Assert.Contains("No space left on device", second.Stderr);
            Assert.InRange(first.Bytes + second.Bytes, 112 * MiB, 128 * MiB); // less ext4 metadata (~8 %)

            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        // Only the pool's warm volumes (of the pod's size) are left, and a clean stop releases them.
        var pool = Path.Combine(d.Root, "volumes", "pool");
        Assert.DoesNotContain(MountsUnder(d.Root), m => !m.StartsWith(pool, StringComparison.Ordinal));
        await d.StopAsync();
        Assert.Empty(MountsUnder(d.Root));
        Assert.DoesNotContain(Leaks.LoopDevices(), l => l.BackingFile.StartsWith(d.Dir, StringComparison.Ordinal));
    }

    private static List<string> MountsUnder(string dir) =>
        [.. File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4]).Where(m => m.StartsWith(dir, StringComparison.Ordinal))];

    /// <summary>Status verbose's warm volumes of <paramref name="size"/>, once it is <paramref name="want"/>
    /// (the pool fills in the background; polled with a deadline).</summary>
    private static async Task WaitWarmAsync(CriClient c, long size, int want)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ready = -1;
        while (!deadline.IsCancellationRequested)
        {
            var status = await c.Runtime.StatusAsync(new StatusRequest { Verbose = true });
            using var storage = JsonDocument.Parse(status.Info["storage"]);
            ready = storage.RootElement.GetProperty("warm").EnumerateArray()
                .Where(w => w.GetProperty("sizeBytes").GetInt64() == size).Select(w => w.GetProperty("ready").GetInt32()).FirstOrDefault();
            if (ready == want) return;
            await Task.Delay(100, CancellationToken.None);
        }
        Assert.Fail($"{want} warm volumes of {size} bytes expected, {ready} ready after 60 s");
    }

    [Fact]
    public async Task TheNextContainerOfASize_GetsAWarmVolume_WhoseQuotaHolds_AndACleanStopLeavesNoVolumeBehind()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("warm");
        var pool = Path.Combine(d.Root, "volumes", "pool");
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            var podId = await c.RunPodAsync(pod);
            // The first of its size is made cold; the pool then keeps two ready.
            await c.StartNewAsync(podId, pod, WithQuota(Container("first", image, "sleep", "3600"), "64Mi"));
            await WaitWarmAsync(c, 64 * MiB, 2);
            var warmDevices = Leaks.LoopDevices().Where(l => l.BackingFile.StartsWith(pool, StringComparison.Ordinal)).Select(l => l.Device).ToHashSet();
            Assert.Equal(2, warmDevices.Count);

            var second = await c.StartNewAsync(podId, pod, WithQuota(Container("second", image, "sleep", "3600"), "64Mi"));

            // It is one of the warm ones, now named the container's (the loop device follows the file).
            var volumeImage = Path.Combine(d.Root, "containers", second, "volume.img");
            Assert.Contains(LoopDeviceOf(volumeImage) ?? "(none)", warmDevices);
            Assert.True(Ns.IsMounted(Path.Combine(d.Root, "containers", second, "volume")));
            var (code, stderr, bytes) = await WriteAsync(c, second, "/big", 100);
            Assert.NotEqual(0, code);
            Assert.Contains("No space left on device", stderr);
            Assert.InRange(bytes, 56 * MiB, 64 * MiB);
            var stats = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = second })).Stats.WritableLayer;
            Assert.InRange((long)stats.UsedBytes.Value, bytes, 64 * MiB);
            // Topped up again in the background.
            await WaitWarmAsync(c, 64 * MiB, 2);

            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
            Assert.False(File.Exists(volumeImage));
            Assert.Null(LoopDeviceOf(volumeImage));
        }
        Assert.DoesNotContain(MountsUnder(d.Root), m => !m.StartsWith(pool, StringComparison.Ordinal));
        Assert.Equal(2, MountsUnder(pool).Count);

        await d.StopAsync();

        Assert.Empty(MountsUnder(d.Root));
        Assert.DoesNotContain(Leaks.LoopDevices(), l => l.BackingFile.StartsWith(d.Dir, StringComparison.Ordinal));
        Assert.Empty(Directory.GetDirectories(pool));
    }

    [Fact]
    public async Task InvalidQuotaAnnotation_IsInvalidArgumentNamingIt()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (c, image) = (node.C, node.Busybox);
        var pod = PodConfig("badquota");
        var podId = await c.RunPodAsync(pod);

        var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => c.CreateAsync(podId, pod, WithQuota(Container("app", image, "true"), "plenty")));

        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("disk-quota.criruntime.io/container.app", e.Status.Detail);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
