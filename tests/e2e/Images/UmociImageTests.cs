using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Google.Protobuf;

namespace CriRuntime.Tests.E2E.Images;

/// <summary>An image written by a second, independent tool: Debian's umoci builds "test/umoci"
/// (hack/images/build-images.sh) with its own manifest, config and layer tars, which end right
/// after the last entry (no padding, no end-of-archive blocks). Pulled and run the way the kubelet
/// does, with what umoci configured checked from inside the container.</summary>
[Collection(RegistryCollection.Name)]
public sealed class UmociImageTests(RegistryWithImages fixture) : IAsyncLifetime
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private readonly DaemonProcess _daemon = new();
    private TestNetwork _net = null!;
    private CriClient _cri = null!;
    private readonly List<string> _pods = [];
    private readonly string _logs = Directory.CreateTempSubdirectory("criruntime-umoci-logs-").FullName;

    public async Task InitializeAsync()
    {
        _net = new TestNetwork(_daemon);
        await _daemon.StartAsync();
        _cri = _daemon.Client();
    }

    public async Task DisposeAsync()
    {
        foreach (var podId in _pods)
        {
            await _cri.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
            await _cri.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        _cri.Dispose();
        _net.Dispose();
        _daemon.Dispose();
        Directory.Delete(_logs, recursive: true);
    }

    private string Tagged => _registry.Image("umoci");
    private string ByDigest => _registry.ImageByDigest("umoci");

    /// <summary>A pod as the kubelet sends it: log directory, DNS, a port, labels and
    /// annotations, namespaces network POD / pid CONTAINER / ipc POD, no cgroup parent.</summary>
    private PodSandboxConfig KubeletPod(string name)
    {
        var uid = Guid.NewGuid().ToString();
        var logDir = Path.Combine(_logs, $"e2e_{name}_{uid}");
        Directory.CreateDirectory(logDir);
        return new PodSandboxConfig
        {
            Metadata = new PodSandboxMetadata { Name = name, Namespace = "e2e", Uid = uid, Attempt = 0 },
            Hostname = name,
            LogDirectory = logDir,
            DnsConfig = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "e2e.svc.cluster.local", "svc.cluster.local" }, Options = { "ndots:5" } },
            PortMappings = { new PortMapping { Protocol = Protocol.Tcp, ContainerPort = 8080 } },
            Labels = { ["io.kubernetes.pod.name"] = name, ["io.kubernetes.pod.namespace"] = "e2e", ["io.kubernetes.pod.uid"] = uid },
            Annotations = { ["kubernetes.io/config.source"] = "api" },
            Linux = new LinuxPodSandboxConfig
            {
                SecurityContext = new LinuxSandboxSecurityContext
                {
                    NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
                },
            },
        };
    }

    /// <summary>A container as the kubelet creates it for a pod spec that sets neither command
    /// nor args: the image is the id PullImage returned, the user's spelling goes along; envs,
    /// the termination-log mount, resources and a security context without a user.</summary>
    private ContainerConfig KubeletContainer(string imageId, string userSpecified, string termination) => new()
    {
        Metadata = new ContainerMetadata { Name = "main", Attempt = 0 },
        Image = new ImageSpec { Image = imageId, UserSpecifiedImage = userSpecified },
        Envs =
        {
            new KeyValue { Key = "KUBERNETES_SERVICE_HOST", Value = ByteString.CopyFromUtf8("10.96.0.1") },
            new KeyValue { Key = "KUBERNETES_SERVICE_PORT", Value = ByteString.CopyFromUtf8("443") },
        },
        Mounts = { new Mount { ContainerPath = "/dev/termination-log", HostPath = termination, Propagation = MountPropagation.PropagationPrivate } },
        Labels = { ["io.kubernetes.container.name"] = "main" },
        Annotations = { ["io.kubernetes.container.terminationMessagePath"] = "/dev/termination-log" },
        LogPath = "main/0.log",
        Linux = new LinuxContainerConfig
        {
            Resources = new LinuxContainerResources { CpuPeriod = 100000, CpuShares = 2, OomScoreAdj = 1000 },
            SecurityContext = new LinuxContainerSecurityContext
            {
                NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
                MaskedPaths = { "/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware" },
                ReadonlyPaths = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" },
            },
        },
    };

    private async Task<(string PodId, string ContainerId)> RunAsync(string name, string imageId, string userSpecified)
    {
        var pod = KubeletPod(name);
        var podId = (await _cri.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod })).PodSandboxId;
        _pods.Add(podId); // removed at DisposeAsync, also when an assertion failed
        var termination = Path.Combine(_logs, $"{name}-termination-log");
        File.WriteAllText(termination, "");
        var id = await _cri.StartNewAsync(podId, pod, KubeletContainer(imageId, userSpecified, termination));
        return (podId, id);
    }

    /// <summary>What umoci's config gave the container's process, read from inside.</summary>
    private async Task AssertUmociConfigReachedTheProcess(string id)
    {
        // Entrypoint ["/bin/sleep"] + Cmd ["3600"]: the container's pid 1.
        Assert.Equal("/bin/sleep\u00003600\u0000", await _cri.ExecOkAsync(id, "cat", "/proc/1/cmdline"));
        var env = (await _cri.ExecOkAsync(id, "cat", "/proc/1/environ")).Split('\0');
        Assert.Contains("UMOCI_GREETING=hello-from-umoci", env);
        Assert.Contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin", env);
        Assert.Contains("KUBERNETES_SERVICE_HOST=10.96.0.1", env);
        Assert.Equal("/srv/umoci", (await _cri.ExecOkAsync(id, "readlink", "/proc/1/cwd")).Trim());
        // User "app": a name umoci wrote, resolved through the image's own /etc/passwd.
        var status = (await _cri.ExecOkAsync(id, "cat", "/proc/1/status")).Split('\n');
        Assert.Equal("Uid:\t1000\t1000\t1000\t1000", status.Single(l => l.StartsWith("Uid:", StringComparison.Ordinal)));
        Assert.Equal("Gid:\t1000\t1000\t1000\t1000", status.Single(l => l.StartsWith("Gid:", StringComparison.Ordinal)));
        // Inserted by `umoci insert` (owned by app, mode 0640): readable by the container's user.
        Assert.Equal("inserted by umoci\n", await _cri.ExecOkAsync(id, "cat", "/srv/umoci/inserted.txt"));
        Assert.Equal("1000:1000 640", (await _cri.ExecOkAsync(id, "stat", "-c", "%u:%g %a", "/srv/umoci/inserted.txt")).Trim());
        // `umoci insert --whiteout /bin/vi` hid the applet of the layer below.
        Assert.Equal("gone\n", await _cri.ExecOkAsync(id, "sh", "-c", "test -e /bin/vi || echo gone"));
        Assert.Equal("present\n", await _cri.ExecOkAsync(id, "sh", "-c", "test -e /bin/ls && echo present"));
    }

    [Fact]
    public async Task UmociImage_PulledByTag_RunsWithUmocisConfig()
    {
        var id = await _cri.PullAsync(Tagged);

        var image = await _cri.StatusAsync(Tagged);
        Assert.NotNull(image);
        Assert.Equal(id, image.Id);
        Assert.Equal([Tagged], image.RepoTags);
        Assert.Equal([ByDigest], image.RepoDigests);
        Assert.Equal("app", image.Username);
        Assert.Null(image.Uid);
        var info = await _cri.VerboseInfoAsync(id);
        var config = info.GetProperty("imageSpec").GetProperty("config");
        Assert.Equal("umoci", config.GetProperty("Labels").GetProperty("built-by").GetString());
        Assert.Equal(3, (await _cri.LayerDirsAsync(_daemon, id)).Count);

        var (_, containerId) = await RunAsync("umoci-tag", id, Tagged);
        var status = await PodHelpers.StatusAsync(_cri, containerId);
        Assert.Equal(ContainerState.ContainerRunning, status.State);
        Assert.Equal(id, status.ImageId);
        Assert.Equal(ByDigest, status.ImageRef); // the repo digest, as containerd reports it
        await AssertUmociConfigReachedTheProcess(containerId);
    }

    [Fact]
    public async Task UmociImage_PulledByDigest_AndByTagAtDigest_RecordsOnlyTheDigest_AndRuns()
    {
        var id = await _cri.PullAsync(ByDigest);
        var image = await _cri.StatusAsync(ByDigest);
        Assert.NotNull(image);
        Assert.Equal(id, image.Id);
        Assert.Empty(image.RepoTags);
        Assert.Equal([ByDigest], image.RepoDigests);

        // "repo:tag@digest", as a pod spec may pin an image: the digest decides, the tag is not
        // recorded (containerd drops it too), so the tag stays unknown here.
        var tagAtDigest = $"{Tagged}@{_registry.Digest("umoci")}";
        Assert.Equal(id, await _cri.PullAsync(tagAtDigest));
        image = await _cri.StatusAsync(tagAtDigest);
        Assert.NotNull(image);
        Assert.Empty(image.RepoTags);
        Assert.Equal([ByDigest], image.RepoDigests);
        Assert.Null(await _cri.StatusAsync(Tagged));
        var listed = Assert.Single((await _cri.Images.ListImagesAsync(new ListImagesRequest())).Images, i => i.Id == id);
        Assert.Empty(listed.RepoTags);

        // crictl create passes the name it was given rather than the id.
        var (_, containerId) = await RunAsync("umoci-digest", ByDigest, ByDigest);
        await AssertUmociConfigReachedTheProcess(containerId);
    }
}
