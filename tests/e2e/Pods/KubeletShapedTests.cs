using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Google.Protobuf;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>Pods and containers requested the way the kubelet requests them (<see cref="Kubelet"/>),
/// checked from inside the container: env values, hostname, port mappings without host ports,
/// log paths, and the errors a malformed request gets.</summary>
[Collection(RegistryCollection.Name)]
public class KubeletShapedTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private static KubePod Pod(TestNode node, string name) => new() { Name = name, LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };

    /// <summary>The kubelet creates containers by image id (what ImageStatus reported for the pulled reference).</summary>
    private static async Task<string> ImageId(CriClient c, string image) =>
        (await c.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image } })).Image.Id;

    /// <summary>Runs the pod and builds (does not create) a busybox container config for it.</summary>
    private static async Task<(string PodId, ContainerConfig Config)> PodAndContainerAsync(TestNode node, KubePod pod, PodSandboxConfig sandbox,
        string name, string[] command, IReadOnlyDictionary<string, string>? env = null)
    {
        var podId = await node.C.RunPodAsync(sandbox);
        node.Track(podId);
        return (podId, Kubelet.Container(pod, name, await ImageId(node.C, node.Busybox), node.Busybox, command, env));
    }

    private static async Task<(string Pod, string Container)> RunAsync(TestNode node, KubePod pod, PodSandboxConfig sandbox, string name,
        string[] command, IReadOnlyDictionary<string, string>? env = null)
    {
        var (podId, config) = await PodAndContainerAsync(node, pod, sandbox, name, command, env);
        return (podId, await node.C.StartNewAsync(podId, sandbox, config));
    }

    /// <summary>Containers of a pod share its IPC namespace, so POSIX shared memory (shm_open: a
    /// file in /dev/shm) must be one place for them, as under containerd and CRI-O: the pod's own
    /// tmpfs, sized by the shm annotation, bound into each, gone with the pod. A pod on the host's
    /// IPC namespace sees the host's /dev/shm.</summary>
    [Fact]
    public async Task ContainersOfAPod_ShareThePodsDevShm_SizedByItsAnnotation_AndItIsUnmountedWithThePod()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "shm");
        var sandbox = Kubelet.Sandbox(pod);
        sandbox.Annotations["shm-size.criruntime.io/pod"] = "16Mi";
        var (podId, writer) = await PodAndContainerAsync(node, pod, sandbox, "writer", ["sh", "-c", "echo from-writer > /dev/shm/segment; exec sleep 3600"]);
        var writerId = await node.C.StartNewAsync(podId, sandbox, writer);
        var readerId = await node.C.StartNewAsync(podId, sandbox, Kubelet.Container(pod, "reader", await ImageId(node.C, node.Busybox), node.Busybox, ["sleep", "3600"]));

        Assert.Equal("from-writer\n", await node.C.ExecOkAsync(readerId, "sh", "-c", "until [ -s /dev/shm/segment ]; do sleep 0.05; done; cat /dev/shm/segment"));
        await node.C.ExecOkAsync(readerId, "sh", "-c", "echo from-reader > /dev/shm/back");
        Assert.Equal("from-reader\n", await node.C.ExecOkAsync(writerId, "cat", "/dev/shm/back"));
        // One tmpfs of the pod's size, nosuid/nodev/noexec, and the same one in both containers.
        foreach (var id in new[] { writerId, readerId })
        {
            var shm = (await node.C.ExecOkAsync(id, "cat", "/proc/self/mountinfo")).Split('\n').Select(l => l.Split(' ')).Last(f => f.Length > 4 && f[4] == "/dev/shm");
            Assert.Equal("tmpfs", shm[Array.IndexOf(shm, "-") + 1]);
            Assert.Contains("size=16384k", shm[Array.IndexOf(shm, "-") + 3]);
            Assert.Contains("nosuid", shm[5]);
            Assert.Contains("noexec", shm[5]);
        }
        var hostMount = File.ReadAllLines("/proc/self/mountinfo").Where(l => l.Contains($"/pods/{podId}/shm ", StringComparison.Ordinal)).ToList();
        Assert.Single(hostMount);

        await node.C.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains($"/pods/{podId}/shm ", StringComparison.Ordinal));
        await node.C.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });

        // The host's IPC namespace: the host's /dev/shm (a file the host made is there).
        var marker = $"criruntime-e2e-{Guid.NewGuid():N}";
        File.WriteAllText(Path.Combine("/dev/shm", marker), "host\n");
        try
        {
            var hostPod = Pod(node, "host-ipc");
            var hostSandbox = Kubelet.Sandbox(hostPod);
            hostSandbox.Linux.SecurityContext.NamespaceOptions.Ipc = NamespaceMode.Node;
            var (hostId, c) = await RunAsync(node, hostPod, hostSandbox, "probe", ["sleep", "3600"]);
            Assert.Equal("host\n", await node.C.ExecOkAsync(c, "cat", $"/dev/shm/{marker}"));
        }
        finally { File.Delete(Path.Combine("/dev/shm", marker)); }
    }

    [Fact]
    public async Task OrdinaryPod_WithContainerPortsWithoutHostPorts_RunsAndItsContainerSeesItsEnvHostnameAndFiles()
    {
        await using var node = await TestNode.StartAsync(_registry);
        // Two containerPorts, neither with a hostPort: the kubelet sends both with host_port 0.
        var pod = Pod(node, "web") with { Ports = [(8080, 0), (9090, 0)] };
        var sandbox = Kubelet.Sandbox(pod);
        var env = new Dictionary<string, string>
        {
            ["FOO"] = "bar",
            ["WITH_SPACES_AND_EQUALS"] = "a b=c",
            ["UTF8"] = "héllo ✓",
            ["EMPTY"] = "",
        };
        var (podId, id) = await RunAsync(node, pod, sandbox, "app", ["sleep", "3600"], env);

        var inside = (await node.C.ExecOkAsync(id, "env")).Split('\n');
        Assert.Contains("FOO=bar", inside);
        Assert.Contains("WITH_SPACES_AND_EQUALS=a b=c", inside);
        Assert.Contains("UTF8=héllo ✓", inside);
        Assert.Contains("EMPTY=", inside);
        Assert.DoesNotContain(inside, l => l.Contains("ByteString", StringComparison.Ordinal));
        // What the runtime gives its own processes (the cgroup mounts, GC settings) is not the
        // container's: neither its init nor an exec sees it.
        Assert.DoesNotContain(inside, l => l.StartsWith("CRIRUNTIME_", StringComparison.Ordinal) || l.StartsWith("DOTNET_", StringComparison.Ordinal));
        Assert.DoesNotContain("CRIRUNTIME_", await node.C.ExecOkAsync(id, "cat", "/proc/1/environ"));
        Assert.Equal("web", (await node.C.ExecOkAsync(id, "hostname")).Trim());
        Assert.Equal("web", (await node.C.ExecOkAsync(id, "cat", "/etc/hostname")).Trim());
        Assert.Contains("# Kubernetes-managed hosts file.", await node.C.ExecOkAsync(id, "cat", "/etc/hosts"));
        Assert.Contains("options ndots:5", await node.C.ExecOkAsync(id, "cat", "/etc/resolv.conf"));
        await node.C.ExecOkAsync(id, "sh", "-c", "echo done > /dev/termination-log");

        var status = await node.C.StatusAsync(id);
        Assert.Equal(Path.Combine(Kubelet.LogDirectory(pod), "app", "0.log"), status.LogPath);
        Assert.True(File.Exists(status.LogPath));
        Assert.Equal("web", status.Labels["io.kubernetes.pod.name"]);
        // Created by image id, reported by name and repo digest (the pod status' image and imageID).
        Assert.Equal(node.Busybox, status.Image.Image);
        Assert.Equal(node.Busybox, status.Image.UserSpecifiedImage);
        Assert.Equal($"{node.Busybox[..node.Busybox.LastIndexOf(':')]}@", status.ImageRef[..(node.Busybox.LastIndexOf(':') + 1)]);
        Assert.StartsWith("sha256:", status.ImageId);
        var podStatus = (await node.C.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId })).Status;
        Assert.Equal(PodSandboxState.SandboxReady, podStatus.State);
        Assert.NotEmpty(podStatus.Network.Ip);
    }

    [Fact]
    public async Task PodWithoutHostname_GetsTheNodesHostname_EvenWhenItsNameIsLongerThanAHostname()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "a-pod-whose-name-is-much-longer-than-the-sixty-four-bytes-a-hostname-may-have-x");
        var sandbox = Kubelet.Sandbox(pod);
        sandbox.Hostname = "";
        var (_, id) = await RunAsync(node, pod, sandbox, "app", ["sleep", "3600"]);
        Assert.Equal(System.Net.Dns.GetHostName(), (await node.C.ExecOkAsync(id, "hostname")).Trim());
    }

    [Fact]
    public async Task HostNetworkPod_AsTheKubeletSendsIt_HasTheNodesHostnameAndNetworkNamespace()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "hostnet") with { HostNetwork = true };
        var sandbox = Kubelet.Sandbox(pod);
        Assert.Empty(sandbox.Hostname); // the kubelet sends none for a host-network pod
        var (_, id) = await RunAsync(node, pod, sandbox, "app", ["sleep", "3600"]);
        Assert.Equal(System.Net.Dns.GetHostName(), (await node.C.ExecOkAsync(id, "hostname")).Trim());
        // The host's network namespace: the same namespace inode as the test process's.
        Assert.Equal(new FileInfo("/proc/self/ns/net").LinkTarget, (await node.C.ExecOkAsync(id, "readlink", "/proc/self/ns/net")).Trim());
    }

    [Theory]
    [InlineData("name-of-sixty-five-bytes-is-one-byte-more-than-linux-allows-xxxxx")]
    [InlineData("under_score")]
    [InlineData("-leading-dash")]
    [InlineData("new\nline")]
    public async Task Hostname_TooLongOrInvalid_IsInvalidArgumentNamingConfigHostname(string hostname)
    {
        await using var node = await TestNode.StartAsync(_registry);
        var sandbox = Kubelet.Sandbox(Pod(node, "badhost"));
        sandbox.Hostname = hostname;
        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.RunPodAsync(sandbox));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("config.hostname", e.Status.Detail);
        Assert.Empty((await node.C.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items);
    }

    [Theory]
    [InlineData(-1, 80, "config.port_mappings[0].host_port")]
    [InlineData(99999, 80, "config.port_mappings[0].host_port")]
    [InlineData(0, 0, "config.port_mappings[0].container_port")]
    [InlineData(8080, 70000, "config.port_mappings[0].container_port")]
    public async Task PortMapping_OutOfRange_IsInvalidArgumentNamingTheField_AndNoNetworkIsSetUp(int hostPort, int containerPort, string field)
    {
        await using var node = await TestNode.StartAsync(_registry);
        var sandbox = Kubelet.Sandbox(Pod(node, "badport") with { Ports = [(containerPort, hostPort)] });
        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.RunPodAsync(sandbox));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(field, e.Status.Detail);
        Assert.Empty(node.Net.Leases()); // no CNI ADD was made
    }

    [Fact]
    public async Task LogPath_LeavingTheLogDirectory_IsInvalidArgument_EvenWhenTheSiblingSharesItsPrefix()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "logs");
        var sandbox = Kubelet.Sandbox(pod);
        var (podId, config) = await PodAndContainerAsync(node, pod, sandbox, "app", ["true"]);
        // "<dir>-evil/x.log" starts with "<dir>" as text but is outside it.
        config.LogPath = $"../{Path.GetFileName(Kubelet.LogDirectory(pod))}-evil/x.log";
        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.CreateAsync(podId, sandbox, config));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("config.log_path", e.Status.Detail);
        Assert.False(Directory.Exists(Kubelet.LogDirectory(pod) + "-evil"));
    }

    [Fact]
    public async Task RelativeLogDirectory_IsInvalidArgumentNamingIt()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var sandbox = Kubelet.Sandbox(Pod(node, "rel-logs"));
        sandbox.LogDirectory = "var/log/pods/x";
        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.RunPodAsync(sandbox));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("config.log_directory", e.Status.Detail);
    }

    [Fact]
    public async Task EnvValue_IsDecodedAsUtf8_InTheBundleConfigToo()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "envbundle");
        var sandbox = Kubelet.Sandbox(pod);
        var (podId, config) = await PodAndContainerAsync(node, pod, sandbox, "app", ["true"]);
        // Not UTF-8: decoded with U+FFFD in its place, as containerd's and CRI-O's JSON encoders do.
        config.Envs.Add(new KeyValue { Key = "RAW", Value = ByteString.CopyFrom(0x61, 0xff, 0x62) });
        config.Envs.Add(new KeyValue { Key = "FOO", Value = ByteString.CopyFromUtf8("bar") });
        var id = await node.C.CreateAsync(podId, sandbox, config);
        var bundle = File.ReadAllText(Directory.GetFiles(Path.Combine(node.D.Root), "config.json", SearchOption.AllDirectories)
            .Single(f => f.Contains(id, StringComparison.Ordinal)));
        Assert.Contains("\"FOO=bar\"", bundle);
        Assert.Contains("\"RAW=a\\uFFFDb\"", bundle, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("", "config.envs[0].key")]
    [InlineData("A=B", "config.envs[0].key")]
    public async Task EnvKey_EmptyOrWithEquals_IsInvalidArgumentNamingTheEntry(string key, string field)
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "badenv");
        var sandbox = Kubelet.Sandbox(pod);
        var (podId, config) = await PodAndContainerAsync(node, pod, sandbox, "app", ["true"]);
        config.Envs.Add(new KeyValue { Key = key, Value = ByteString.CopyFromUtf8("x") });
        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.CreateAsync(podId, sandbox, config));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(field, e.Status.Detail);
    }

    [Fact]
    public async Task StopContainer_WithAGracePeriodBeyondWhatAWaitCanTake_StopsOnTheSignal()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "graceful");
        var (_, id) = await RunAsync(node, pod, Kubelet.Sandbox(pod), "app", ["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 1; done"]);
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = long.MaxValue });
        var status = await node.C.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerExited, status.State);
        Assert.Equal(3, status.ExitCode);
    }

    /// <summary>An exited container holds no mount and no cgroup: they are released when the exit
    /// is recorded (containerd deletes the task at exit), so a StopContainer that returned, or a
    /// container reported exited, has let go of both before the kubelet's RemoveContainer, which is
    /// left the records.</summary>
    [Fact]
    public async Task ExitedContainers_HoldNoRootfsMountOrCgroup_BeforeTheyAreRemoved()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "released");
        var sandbox = Kubelet.Sandbox(pod);
        var (podId, stopped) = await RunAsync(node, pod, sandbox, "stopped", ["sleep", "3600"]);
        var quitter = await node.C.StartNewAsync(podId, sandbox, Kubelet.Container(pod, "quitter", await ImageId(node.C, node.Busybox), node.Busybox,
            ["sh", "-c", "until [ -e /tmp/go ]; do sleep 0.05; done; exit 4"]));
        foreach (var id in new[] { stopped, quitter })
        {
            Assert.Contains(HostMounts(), m => m.Contains(id, StringComparison.Ordinal) && m.EndsWith("/rootfs", StringComparison.Ordinal));
            Assert.NotEmpty(node.D.ContainerCgroups(id));
        }

        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = stopped, Timeout = 10 });
        Assert.DoesNotContain(HostMounts(), m => m.Contains(stopped, StringComparison.Ordinal));
        Assert.Empty(node.D.ContainerCgroups(stopped));

        await node.C.ExecOkAsync(quitter, "touch", "/tmp/go");
        Assert.Equal(4, (await node.C.WaitExitedAsync(quitter)).ExitCode);
        Assert.DoesNotContain(HostMounts(), m => m.Contains(quitter, StringComparison.Ordinal));
        Assert.Empty(node.D.ContainerCgroups(quitter));

        foreach (var id in new[] { stopped, quitter })
            await node.C.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
        Assert.Empty((await node.C.Runtime.ListContainersAsync(new ListContainersRequest { Filter = new ContainerFilter { PodSandboxId = podId } })).Containers);
    }

    private static List<string> HostMounts() =>
        [.. File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')).Where(f => f.Length > 4).Select(f => f[4])];

    [Fact]
    public async Task SharedPidNamespacePod_AsTheKubeletSendsIt_ContainersSeeEachOthersProcesses()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = Pod(node, "shared-pid") with { ShareProcessNamespace = true };
        var sandbox = Kubelet.Sandbox(pod);
        var (podId, first) = await RunAsync(node, pod, sandbox, "first", ["sleep", "3601"]);
        var imageId = await ImageId(node.C, node.Busybox);
        var second = await node.C.StartNewAsync(podId, sandbox, Kubelet.Container(pod, "second", imageId, node.Busybox, ["sleep", "3602"]));
        // Each sees the other's command line in its own /proc, and neither is pid 1 (the pod init is).
        var seenByFirst = await node.C.ExecOkAsync(first, "sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '");
        var seenBySecond = await node.C.ExecOkAsync(second, "sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '");
        Assert.Contains("sleep 3602", seenByFirst);
        Assert.Contains("sleep 3601", seenBySecond);
        Assert.DoesNotContain("sleep", await node.C.ExecOkAsync(first, "cat", "/proc/1/cmdline"));
    }
}
