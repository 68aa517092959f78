using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Storage;

/// <summary>Disk quotas on a storage root on btrfs, through the real daemon with kubelet-shaped
/// requests: the test makes the file system (a sparse image, mkfs.btrfs, a loop mount on the
/// daemon's root) and the daemon picks the btrfs backend by itself (quota_backend = "auto"): a
/// subvolume per writable layer with a qgroup limit, a level-1 qgroup for the pod's total.
/// The btrfs CLI is used here only to look (the daemon never runs it).</summary>
[Collection(RegistryCollection.Name)]
public class BtrfsQuotaTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private const long MiB = 1 << 20;

    /// <summary>A btrfs file system on the daemon's root: made before the daemon starts; Dispose
    /// stops the daemon and unmounts it (the loop device detaches itself: mount -o loop sets autoclear).</summary>
    private sealed class BtrfsRoot : IDisposable
    {
        private readonly DaemonProcess _d;
        public string Image { get; }

        public BtrfsRoot(DaemonProcess d)
        {
            _d = d;
            Image = Path.Combine(d.Dir, "btrfs.img");
            using (var f = new FileStream(Image, FileMode.CreateNew)) f.SetLength(1L << 30);
            Shell.Run("mkfs.btrfs", "-q", Image);
            Directory.CreateDirectory(d.Root);
            Shell.Run("mount", "-o", "loop", Image, d.Root);
        }

        public void Dispose()
        {
            _d.StopAsync().GetAwaiter().GetResult();
            Shell.Run("umount", _d.Root);
        }
    }

    private static string Btrfs(params string[] args) => Shell.Run("btrfs", args);

    /// <summary>The subvolume id of a path ("btrfs inspect-internal rootid").</summary>
    private static ulong SubvolumeId(string path) => ulong.Parse(Btrfs("inspect-internal", "rootid", path).Trim());

    /// <summary>The qgroup ids on the file system ("0/257", "1/256"), once the cleaner has
    /// dropped every deleted subvolume.</summary>
    private static List<string> Qgroups(string root)
    {
        Btrfs("subvolume", "sync", root);
        return [.. Btrfs("qgroup", "show", "--raw", root).Split('\n').Skip(2)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "").Where(q => q.Contains('/'))];
    }

    private static async Task<(string PodId, PodSandboxConfig Sandbox, KubePod Pod)> RunPodAsync(DaemonProcess d, CriClient c, string name, Dictionary<string, string> annotations)
    {
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(d.Dir, "kubelet", "logs"), Annotations = annotations };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = sandbox })).PodSandboxId;
        return (podId, sandbox, pod);
    }

    private static async Task<string> StartAsync(CriClient c, string podId, PodSandboxConfig sandbox, KubePod pod, string name, string image)
    {
        var imageId = (await c.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image } })).Image.Id;
        return await c.StartNewAsync(podId, sandbox, Kubelet.Container(pod, name, imageId, image, ["sleep", "3600"]));
    }

    /// <summary>dd of <paramref name="mib"/> MiB into the container's writable layer: its exit code,
    /// stderr (what the process saw), and the size of what it wrote. The sync commits the btrfs
    /// transaction, so the qgroup's numbers are current.</summary>
    private static async Task<(int Code, string Stderr, long Bytes)> WriteAsync(CriClient c, string id, string file, int mib)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest
        {
            ContainerId = id,
            Cmd = { "sh", "-c", $"dd if=/dev/zero of={file} bs=1048576 count={mib}; rc=$?; sync; wc -c < {file} >&2; exit $rc" },
            Timeout = 120,
        });
        var stderr = r.Stderr.ToStringUtf8();
        return (r.ExitCode, stderr, long.Parse(stderr.Trim().Split('\n')[^1].Trim()));
    }

    [Fact]
    public async Task ContainerQuota_OnBtrfs_FailsWritesWithEDQUOT_SparesTheNeighbour_HoldsAcrossDaemonKill9_AndRemovalLeavesNoSubvolumeOrQgroup()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        using var fs = new BtrfsRoot(d);
        await d.StartAsync();
        // An image another tool wrote (Debian's umoci: user "app", uid 1000, owns /srv/umoci):
        // the quota holds for the container's own unprivileged user, as the process sees it.
        var image = _registry.Image("umoci");
        string podId, limited, volume;
        ulong subvolume;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            (podId, var sandbox, var pod) = await RunPodAsync(d, c, "btrfs-quota",
                new Dictionary<string, string> { ["disk-quota.criruntime.io/container.limited"] = "64Mi" });
            limited = await StartAsync(c, podId, sandbox, pod, "limited", image);
            var neighbour = await StartAsync(c, podId, sandbox, pod, "neighbour", image);
            volume = Path.Combine(d.Root, "containers", limited, "volume");

            // Chosen by itself from the storage root's file system; the layer is a subvolume with
            // a limit on its qgroup, and nothing was loop-mounted for it.
            var status = await c.Runtime.StatusAsync(new StatusRequest { Verbose = true });
            using (var storage = JsonDocument.Parse(status.Info["storage"]))
                Assert.StartsWith("btrfs", storage.RootElement.GetProperty("backend").GetString());
            subvolume = SubvolumeId(volume);
            Assert.True(subvolume >= 256);
            Assert.Contains($"0/{subvolume}", Qgroups(d.Root));
            Assert.DoesNotContain(Leaks.LoopDevices(), l => l.BackingFile.StartsWith(d.Root, StringComparison.Ordinal));

            Assert.Equal("1000", (await c.ExecOkAsync(limited, "id", "-u")).Trim());
            // EDQUOT, not ENOSPC: the file system has room, the qgroup has none.
            var (code, stderr, bytes) = await WriteAsync(c, limited, "/srv/umoci/big", 100);
            Assert.NotEqual(0, code);
            Assert.Contains("Disk quota exceeded", stderr);
            Assert.InRange(bytes, 56 * MiB, 64 * MiB);

            var n = await WriteAsync(c, neighbour, "/srv/umoci/big", 80);
            Assert.Equal(0, n.Code);
            Assert.Equal(80 * MiB, n.Bytes);

            // Stats: the qgroup's referenced bytes.
            var stats = (await c.Runtime.ContainerStatsAsync(new ContainerStatsRequest { ContainerId = limited })).Stats.WritableLayer;
            Assert.Equal(volume, stats.FsId.Mountpoint);
            Assert.InRange((long)stats.UsedBytes.Value, bytes, 64 * MiB);
        }

        await d.KillAsync();
        await d.StartAsync();

        using (var c = d.Client())
        {
            await c.ExecOkAsync(limited, "sh", "-c", "rm /srv/umoci/big && sync");
            var (code, stderr, bytes) = await WriteAsync(c, limited, "/srv/umoci/again", 100);
            Assert.NotEqual(0, code);
            Assert.Contains("Disk quota exceeded", stderr);
            Assert.InRange(bytes, 56 * MiB, 64 * MiB);

            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }

        Assert.False(Directory.Exists(volume));
        Assert.DoesNotContain(Btrfs("subvolume", "list", d.Root).Split('\n'), l => l.EndsWith("/volume", StringComparison.Ordinal));
        Assert.DoesNotContain($"0/{subvolume}", Qgroups(d.Root));
    }

    [Fact]
    public async Task PodQuota_OnBtrfs_TwoContainersTogetherCannotPassIt_AndItsQgroupIsGoneOnceTheCleanerIsDone()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        using var fs = new BtrfsRoot(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        string pod1;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            var (podId, sandbox, pod) = await RunPodAsync(d, c, "btrfs-podquota",
                new Dictionary<string, string> { ["disk-quota.criruntime.io/pod"] = "128Mi" });
            pod1 = $"1/{SubvolumeId(Path.Combine(d.Root, "pods", podId, "volume"))}";
            Assert.Contains(pod1, Qgroups(d.Root));
            var a = await StartAsync(c, podId, sandbox, pod, "a", image);
            var b = await StartAsync(c, podId, sandbox, pod, "b", image);

            var first = await WriteAsync(c, a, "/big", 100);
            Assert.Equal(0, first.Code);
            var second = await WriteAsync(c, b, "/big", 100);
            Assert.NotEqual(0, second.Code);
            Assert.Contains("Disk quota exceeded", second.Stderr);
            Assert.InRange(first.Bytes + second.Bytes, 120 * MiB, 128 * MiB);

            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        // The pod's qgroup cannot go while the cleaner still drops its members (EBUSY); once it is
        // done, the next daemon start (as would the next create or removal) removes it.
        Btrfs("subvolume", "sync", d.Root);
        await d.RestartAsync();
        var left = Qgroups(d.Root);
        Assert.DoesNotContain(pod1, left);
        Assert.DoesNotContain(left, q => q.StartsWith("1/", StringComparison.Ordinal));
        Assert.DoesNotContain(Btrfs("subvolume", "list", d.Root).Split('\n'), l => l.Contains("volume", StringComparison.Ordinal));
    }

    [Fact]
    public async Task QuotaBackendBtrfs_OnAStorageRootThatIsNotBtrfs_StopsTheStart_NamingTheKey()
    {
        using var d = new DaemonProcess();
        File.AppendAllText(d.ConfigFile, "[storage]\nquota_backend = \"btrfs\"\n");

        var e = await Assert.ThrowsAnyAsync<Exception>(() => d.StartAsync());

        Assert.Contains("storage.quota_backend", e.Message + d.Output);
    }
}
