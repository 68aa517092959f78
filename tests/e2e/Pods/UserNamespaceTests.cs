using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>userns_options mode POD (the kubelet's hostUsers: false): the pod gets one user
/// namespace, container id 0 mapped to host id 200000; every container of the pod joins it and
/// sees the image's files through an idmapped rootfs. Asserted from inside (ExecSync) and from
/// the host (/proc/PID/status, the writable layer on disk).</summary>
[Collection(RegistryCollection.Name)]
public class UserNamespaceTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private const uint HostId = 200000, Length = 65536;

    private static UserNamespace PodUserns(uint hostId = HostId, uint length = Length) => new()
    {
        Mode = NamespaceMode.Pod,
        Uids = { new IDMapping { ContainerId = 0, HostId = hostId, Length = length } },
        Gids = { new IDMapping { ContainerId = 0, HostId = hostId, Length = length } },
    };

    private static NamespaceOption Options(UserNamespace userns) => new() { Pid = NamespaceMode.Container, UsernsOptions = userns };

    private static PodSandboxConfig UsernsPod(string name, UserNamespace userns)
    {
        var pod = PodConfig(name);
        pod.Linux.SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = Options(userns) };
        return pod;
    }

    private static ContainerConfig UsernsContainer(string name, string image, params string[] command)
    {
        var config = Container(name, image, command);
        config.Linux.SecurityContext.NamespaceOptions = Options(PodUserns());
        return config;
    }

    private static async Task<string> Exec(CriClient c, string id, params string[] cmd)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { cmd }, Timeout = 30 });
        Assert.True(r.ExitCode == 0, $"{string.Join(' ', cmd)} in {id}: exit {r.ExitCode}: {r.Stderr.ToStringUtf8()}");
        return r.Stdout.ToStringUtf8().Trim();
    }

    [Fact]
    public async Task PodUserns_RootInsideIsHost200000_ImageFilesOwnedByRoot_SharedByTheContainers()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var status = await c.Runtime.StatusAsync(new StatusRequest());
        Assert.All(status.RuntimeHandlers, h => Assert.True(h.Features.UserNamespaces));

        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = UsernsPod("userns", PodUserns());
        var podId = await c.RunPodAsync(pod);
        var first = await c.StartNewAsync(podId, pod, UsernsContainer("first", image, "sleep", "3601"));
        var second = await c.StartNewAsync(podId, pod, UsernsContainer("second", image, "sleep", "3602"));

        // Inside: root, with the pod's mapping.
        Assert.Equal("0", await Exec(c, first, "id", "-u"));
        Assert.Equal("0", await Exec(c, first, "id", "-g"));
        Assert.Equal($"0 {HostId} {Length}", string.Join(' ', (await Exec(c, first, "cat", "/proc/self/uid_map")).Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal($"0 {HostId} {Length}", string.Join(' ', (await Exec(c, first, "cat", "/proc/self/gid_map")).Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        // The image's files (host uid 0 on disk) are root's inside: the rootfs is idmapped.
        Assert.Equal("0:0", await Exec(c, first, "stat", "-c", "%u:%g", "/bin/busybox"));
        // "/" is the writable layer's root (the mapped root's), the rest the image's. (/proc shows
        // 65534: procfs's root belongs to host root in every pid namespace, as under runc.)
        Assert.Equal("0:0\n0:0\n0:0\n0:0", await Exec(c, first, "stat", "-c", "%u:%g", "/", "/bin", "/etc", "/etc/passwd"));
        // The pod's hostname (its UTS namespace, owned by the user namespace) and sysfs (its netns).
        Assert.Equal("userns", await Exec(c, first, "hostname"));
        Assert.Contains("lo", await Exec(c, first, "ls", "/sys/class/net"));

        // From the host: the container's process runs as 200000.
        var pid = d.ContainerPids(first).Container;
        var statusLines = File.ReadAllLines($"/proc/{pid}/status");
        Assert.Contains(statusLines, l => l.StartsWith($"Uid:\t{HostId}\t{HostId}\t{HostId}", StringComparison.Ordinal));
        Assert.Contains(statusLines, l => l.StartsWith($"Gid:\t{HostId}\t{HostId}\t{HostId}", StringComparison.Ordinal));

        // A file the container writes, and one of the image it modifies (copied up): in the writable
        // layer on the host they belong to 200000, the container's root; the image's layers
        // (idmapped lower dirs) stay owned by host root, shared with every other container.
        await Exec(c, first, "sh", "-c", "echo hi > /written-by-container && echo more >> /etc/passwd");
        Assert.Equal("0", await Exec(c, first, "stat", "-c", "%u", "/written-by-container"));
        var upper = Directory.GetFiles(d.Root, "written-by-container", SearchOption.AllDirectories).Single(p => p.Contains("/upper/", StringComparison.Ordinal));
        Assert.Equal(HostId, Owner(upper));
        Assert.Equal(HostId, Owner(Path.Combine(Path.GetDirectoryName(upper)!, "etc", "passwd")));

        // Both containers are in one user namespace: the pod's.
        var ns1 = await Exec(c, first, "readlink", "/proc/self/ns/user");
        var ns2 = await Exec(c, second, "readlink", "/proc/self/ns/user");
        Assert.Equal(ns1, ns2);
        Assert.NotEqual(new FileInfo("/proc/self/ns/user").LinkTarget, ns1);
        Assert.Equal(ns1, new FileInfo($"/proc/{pid}/ns/user").LinkTarget);
        // ... which owns the pod's network namespace too: both see the same one.
        Assert.Equal(await Exec(c, first, "readlink", "/proc/self/ns/net"), await Exec(c, second, "readlink", "/proc/self/ns/net"));

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        // Dispose: the leak check finds no mount (the user namespace pin included), cgroup or process left.
    }

    /// <summary>hostUsers: false with shareProcessNamespace: true. The pod init is pid 1 of a pid
    /// namespace owned by the pod's user namespace (so the containers' root, root only there, may
    /// mount their /proc), both containers are in it and see each other.</summary>
    [Fact]
    public async Task PodUserns_WithPodPidNamespace_ContainersShareIt_Pid1IsThePodInit_InThePodsUserNamespace()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var options = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Pod, Ipc = NamespaceMode.Pod, UsernsOptions = PodUserns() };
        var pod = PodConfig("userns-shared-pid");
        pod.DnsConfig = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "e2e.svc.cluster.local" }, Options = { "ndots:5" } };
        pod.Labels["app"] = "userns-shared-pid";
        pod.Linux.SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = options };
        var podId = await c.RunPodAsync(pod);
        var info = System.Text.Json.JsonDocument.Parse((await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId, Verbose = true })).Info["info"]).RootElement;
        var initPid = info.GetProperty("podInitPid").GetInt32();
        // The pod init runs as the user namespace's root: host 200000.
        Assert.Contains(File.ReadAllLines($"/proc/{initPid}/status"), l => l.StartsWith($"Uid:\t{HostId}\t{HostId}\t{HostId}", StringComparison.Ordinal));

        ContainerConfig Shared(string name, params string[] command)
        {
            var config = Container(name, image, command);
            config.Envs.Add(new CriRuntime.Cri.V1.KeyValue { Key = "ROLE", Value = Google.Protobuf.ByteString.CopyFromUtf8(name) });
            config.Linux.SecurityContext.NamespaceOptions = options.Clone();
            return config;
        }
        var first = await c.StartNewAsync(podId, pod, Shared("first", "sleep", "3601"));
        var second = await c.StartNewAsync(podId, pod, Shared("second", "sleep", "3602"));

        foreach (var id in new[] { first, second })
        {
            var pid1 = (await Exec(c, id, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline")).Trim();
            Assert.Contains("criruntime-pod-init", pid1);
            Assert.Contains(podId, pid1);
            var ps = await Exec(c, id, "ps", "-o", "pid,args");
            Assert.Contains("sleep 3601", ps);
            Assert.Contains("sleep 3602", ps);
            Assert.Equal("0", await Exec(c, id, "id", "-u"));
            Assert.Equal($"0 {HostId} {Length}", string.Join(' ', (await Exec(c, id, "cat", "/proc/self/uid_map")).Split(' ', StringSplitOptions.RemoveEmptyEntries)));
            // The pod init's namespaces as the container sees them: the same pid and user namespace.
            Assert.Equal(new FileInfo($"/proc/{initPid}/ns/pid").LinkTarget, await Exec(c, id, "readlink", "/proc/self/ns/pid"));
            Assert.Equal(new FileInfo($"/proc/{initPid}/ns/user").LinkTarget, await Exec(c, id, "readlink", "/proc/self/ns/user"));
        }
        Assert.NotEqual(new FileInfo("/proc/self/ns/user").LinkTarget, new FileInfo($"/proc/{initPid}/ns/user").LinkTarget);

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        Assert.False(File.Exists($"/proc/{initPid}/cmdline") && File.ReadAllText($"/proc/{initPid}/cmdline").Length > 0, "the pod init outlived StopPodSandbox");
        Assert.Equal(ContainerState.ContainerExited, (await c.StatusAsync(second)).State);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        // Dispose: the leak check finds no process (pod init), mount (pid and user pins) or cgroup left.
    }

    [Fact]
    public async Task PodUserns_WithTheHostsPidNamespace_IsInvalidArgument()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var pod = PodConfig("userns-host-pid");
        pod.Linux.SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Node, UsernsOptions = PodUserns() } };
        var e = await Assert.ThrowsAsync<RpcException>(() => c.RunPodAsync(pod));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("userns_options", e.Status.Detail);
    }

    [Theory]
    [InlineData("two-uid-mappings")]
    [InlineData("container-id-not-0")]
    [InlineData("zero-length")]
    [InlineData("mode-container")]
    [InlineData("node-with-mappings")]
    public async Task InvalidMappings_AreInvalidArgument_NamingTheField(string what)
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var userns = PodUserns();
        string field;
        switch (what)
        {
            case "two-uid-mappings":
                userns.Uids.Add(new IDMapping { ContainerId = Length, HostId = HostId + Length, Length = 10 });
                field = "userns_options.uids";
                break;
            case "container-id-not-0":
                userns.Gids[0].ContainerId = 1;
                field = "userns_options.gids[0].container_id";
                break;
            case "zero-length":
                userns.Uids[0].Length = 0;
                field = "userns_options.uids[0].length";
                break;
            case "mode-container":
                userns.Mode = NamespaceMode.Container;
                field = "userns_options.mode";
                break;
            default:
                userns.Mode = NamespaceMode.Node;
                field = "userns_options: mode NODE";
                break;
        }
        var e = await Assert.ThrowsAsync<RpcException>(() => c.RunPodAsync(UsernsPod("bad-" + what, userns)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(field, e.Status.Detail);
        Assert.Empty((await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items);
    }

    [Fact]
    public async Task Container_AskingForAUserns_InAPodWithout_IsInvalidArgument()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("no-userns");
        var podId = await c.RunPodAsync(pod);
        var e = await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, UsernsContainer("c", image, "true")));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("userns_options: POD, but the pod sandbox was not created with a user namespace", e.Status.Detail);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    private static uint Owner(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return uint.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
    }
}
