using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using CriRuntime.Tests.E2E.Images;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>supplemental_groups_policy (the kubelet's supplementalGroupsPolicy): Merge, the
/// default, gives the process the groups the image's /etc/group lists its user in besides the
/// requested ones; Strict only the requested ones. Both add the primary gid. The image here is
/// the busybox test image's layer with an /etc/group that puts user app (1000) in group 50000.</summary>
[Collection(RegistryCollection.Name)]
public class SupplementalGroupsTests(RegistryWithImages fixture)
{
    private const long ImageGroup = 50000, Requested = 1234;
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task Status_AdvertisesSupplementalGroupsPolicy()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var status = await c.Runtime.StatusAsync(new StatusRequest());
        Assert.True(status.Features?.SupplementalGroupsPolicy, "Status.features.supplemental_groups_policy is not set: the kubelet would not pass the policy");
    }

    [Fact]
    public async Task Merge_ProcessHasTheImagesGroupsForTheUser_AndStatusReportsThem()
    {
        var (inside, user) = await RunAsAppAsync(SupplementalGroupsPolicy.Merge);
        Assert.Equal<long>([1000, Requested, ImageGroup], inside);
        Assert.Equal(1000, user.Uid);
        Assert.Equal(1000, user.Gid);
        Assert.Equal(inside, user.SupplementalGroups.Order().ToList());
    }

    [Fact]
    public async Task Strict_ProcessHasOnlyTheRequestedGroupsAndItsGid_AndStatusReportsThem()
    {
        var (inside, user) = await RunAsAppAsync(SupplementalGroupsPolicy.Strict);
        Assert.Equal<long>([1000, Requested], inside);
        Assert.Equal(1000, user.Uid);
        Assert.Equal(1000, user.Gid);
        Assert.Equal(inside, user.SupplementalGroups.Order().ToList());
    }

    /// <summary>Runs a container as uid 1000 with supplemental group 1234 and the policy, the way
    /// the kubelet asks for runAsUser: 1000, supplementalGroups: [1234]; returns the groups of its
    /// pid 1 (/proc/1/status, sorted, as the kernel keeps them), after checking an exec'd process
    /// has the same (`id -G`), and ContainerStatus.user.linux.</summary>
    private async Task<(List<long> Inside, LinuxContainerUser User)> RunAsAppAsync(SupplementalGroupsPolicy policy)
    {
        using var registry = new OneImageRegistry(LayerWithImageGroup());
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        await c.PullAsync(registry.Image);
        var pod = PodConfig("groups-" + policy.ToString().ToLowerInvariant(), Path.Combine(d.Dir, "pod-logs"));
        pod.Linux.SecurityContext = new LinuxSandboxSecurityContext
        {
            NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
            RunAsUser = new Int64Value { Value = 1000 },
            SupplementalGroups = { Requested },
            SupplementalGroupsPolicy = policy,
        };
        var podId = await c.RunPodAsync(pod);
        try
        {
            var config = Container("main", registry.Image, "/bin/sleep", "3600");
            config.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 1000 };
            config.Linux.SecurityContext.SupplementalGroups.Add(Requested);
            config.Linux.SecurityContext.SupplementalGroupsPolicy = policy;
            config.Linux.SecurityContext.NamespaceOptions = pod.Linux.SecurityContext.NamespaceOptions.Clone();
            var id = await c.StartNewAsync(podId, pod, config);

            var line = (await c.ExecOkAsync(id, "/bin/cat", "/proc/1/status")).Split('\n').Single(l => l.StartsWith("Groups:", StringComparison.Ordinal));
            List<long> inside = [.. line["Groups:".Length..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(long.Parse)];
            var execGroups = (await c.ExecOkAsync(id, "/bin/id", "-G")).Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).Distinct().Order();
            Assert.Equal(inside, execGroups);
            Assert.Equal("1000", (await c.ExecOkAsync(id, "/bin/id", "-u")).Trim());
            Assert.Equal("1000", (await c.ExecOkAsync(id, "/bin/id", "-g")).Trim());
            var user = (await PodHelpers.StatusAsync(c, id)).User?.Linux;
            Assert.NotNull(user);
            return (inside, user);
        }
        finally
        {
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    /// <summary>The busybox test image's layer, uncompressed, with /etc/group replaced by one that
    /// lists user app in group 50000 (and nobody in 50001, which app must not get).</summary>
    private static byte[] LayerWithImageGroup()
    {
        var layout = Path.Combine(TestImages.Build(), "busybox");
        using var index = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(layout, "index.json")));
        using var manifest = JsonDocument.Parse(File.ReadAllBytes(Blob(layout, index.RootElement.GetProperty("manifests")[0].GetProperty("digest").GetString()!)));
        var layerBlob = Blob(layout, manifest.RootElement.GetProperty("layers")[0].GetProperty("digest").GetString()!);
        var groupFile = "root:x:0:\napp:x:1000:\nimage-group:x:50000:nobody,app\nother-group:x:50001:nobody\nnogroup:x:65534:\n"u8.ToArray();

        using var input = new GZipStream(File.OpenRead(layerBlob), CompressionMode.Decompress);
        using var reader = new TarReader(input);
        using var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            var replaced = false;
            while (reader.GetNextEntry(copyData: true) is { } entry)
            {
                if (entry.Name.TrimStart('.', '/') == "etc/group")
                {
                    var group = new PaxTarEntry(TarEntryType.RegularFile, entry.Name)
                    {
                        Mode = entry.Mode, Uid = 0, Gid = 0, ModificationTime = entry.ModificationTime,
                        DataStream = new MemoryStream(groupFile),
                    };
                    writer.WriteEntry(group);
                    replaced = true;
                }
                else writer.WriteEntry(entry);
            }
            Assert.True(replaced, "the busybox layer has no etc/group");
        }
        return output.ToArray();
    }

    private static string Blob(string layout, string digest) => Path.Combine(layout, "blobs", "sha256", digest["sha256:".Length..]);
}
