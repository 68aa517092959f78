using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>Requests the daemon refuses itself, before anything is made: InvalidArgument whose
/// message names the CRI field of the request (what the kubelet logs and surfaces in events),
/// never the OCI field of a shim's refusal (FailedPrecondition), Internal or Unknown.</summary>
[Collection(RegistryCollection.Name)]
public class CriValidationTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>A pod as the kubelet asks for one.</summary>
    private static PodSandboxConfig KubeletPod(DaemonProcess d, string name) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "e2e", Uid = Guid.NewGuid().ToString() },
        Hostname = name,
        LogDirectory = Directory.CreateDirectory(Path.Combine(d.Dir, "logs", name)).FullName,
        DnsConfig = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "e2e.svc.cluster.local", "svc.cluster.local" }, Options = { "ndots:5" } },
        PortMappings = { new PortMapping { Protocol = Protocol.Tcp, ContainerPort = 8080 } },
        Labels = { ["app"] = name, ["io.kubernetes.pod.namespace"] = "e2e" },
        Annotations = { ["kubernetes.io/config.source"] = "api" },
        Linux = new LinuxPodSandboxConfig
        {
            SecurityContext = new LinuxSandboxSecurityContext
            {
                NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
            },
        },
    };

    /// <summary>A container as the kubelet asks for one.</summary>
    private static ContainerConfig KubeletContainer(string name, string image, string volume, params string[] command)
    {
        var c = Container(name, image, command);
        c.Envs.Add(new CriRuntime.Cri.V1.KeyValue { Key = "KUBERNETES_SERVICE_HOST", Value = Google.Protobuf.ByteString.CopyFromUtf8("10.96.0.1") });
        c.Mounts.Add(new Mount { ContainerPath = "/data", HostPath = volume, Propagation = MountPropagation.PropagationPrivate });
        c.Linux.Resources = new LinuxContainerResources { CpuShares = 102, CpuPeriod = 100_000, CpuQuota = 50_000, MemoryLimitInBytes = 64 << 20, OomScoreAdj = 1000 };
        c.Linux.SecurityContext.NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod };
        c.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 0 };
        c.Linux.SecurityContext.MaskedPaths.Add("/proc/kcore");
        c.Linux.SecurityContext.ReadonlyPaths.Add("/proc/sys");
        return c;
    }

    private static async Task<RpcException> Refused(Func<Task> call, string field, string what)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(e.StatusCode == StatusCode.InvalidArgument, $"{what}: {e.StatusCode} {e.Status.Detail}");
        Assert.True(e.Status.Detail.Contains(field, StringComparison.Ordinal), $"{what}: '{e.Status.Detail}' does not name {field}");
        return e;
    }

    [Fact]
    public async Task CreateContainer_WhatTheShimOrKernelWouldRefuse_IsInvalidArgument_NamingTheCriField_AndLeavesNothing()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var volume = Directory.CreateDirectory(Path.Combine(d.Dir, "volume")).FullName;
        var pod = KubeletPod(d, "refused");
        var podId = await c.RunPodAsync(pod);

        var cases = new (string What, string Field, Action<ContainerConfig> Break)[]
        {
            ("cpu shares below the kernel's 2", "config.linux.resources.cpu_shares", x => x.Linux.Resources.CpuShares = 1),
            ("cpu shares above 262144", "config.linux.resources.cpu_shares", x => x.Linux.Resources.CpuShares = 262145),
            ("a cpuset that is no list", "config.linux.resources.cpuset_cpus", x => x.Linux.Resources.CpusetCpus = "0-a"),
            ("a reversed cpuset range", "config.linux.resources.cpuset_mems", x => x.Linux.Resources.CpusetMems = "1-0"),
            ("a unified key climbing out", "config.linux.resources.unified", x => x.Linux.Resources.Unified[".."] = "1"),
            ("a unified key with a slash", "config.linux.resources.unified", x => x.Linux.Resources.Unified["../memory.max"] = "1"),
            ("a relative mount source", "config.mounts[0].host_path: 'tmp' must be an absolute path", x => x.Mounts[0].HostPath = "tmp"),
            ("recursive read-only with host-to-container propagation", "config.mounts[0].propagation: recursive_read_only needs PROPAGATION_PRIVATE",
                x => { x.Mounts[0].Readonly = true; x.Mounts[0].RecursiveReadOnly = true; x.Mounts[0].Propagation = MountPropagation.PropagationHostToContainer; }),
            ("recursive read-only, bidirectional", "config.mounts[0].propagation",
                x => { x.Mounts[0].Readonly = true; x.Mounts[0].RecursiveReadOnly = true; x.Mounts[0].Propagation = MountPropagation.PropagationBidirectional; }),
            ("run_as_group without a user", "config.linux.security_context.run_as_group",
                x => { x.Linux.SecurityContext.RunAsUser = null; x.Linux.SecurityContext.RunAsGroup = new Int64Value { Value = 3000 }; }),
        };
        foreach (var (what, field, breakIt) in cases)
        {
            var config = KubeletContainer("bad", image, volume, "sleep", "3600");
            breakIt(config);
            var e = await Refused(() => c.CreateAsync(podId, pod, config), field, what);
            Assert.DoesNotContain("linux.resources.cpu.", e.Status.Detail); // not the OCI name
        }
        Assert.Empty((await c.Runtime.ListContainersAsync(new ListContainersRequest())).Containers);
        Assert.Empty(Directory.GetDirectories(Path.Combine(d.Root, "containers")));

        // The same container, unbroken, runs: the refusals were about the fields, not the rest.
        var ok = KubeletContainer("good", image, volume, "sleep", "3600");
        ok.Mounts[0].Readonly = true;
        ok.Mounts[0].RecursiveReadOnly = true;
        ok.Linux.SecurityContext.RunAsGroup = new Int64Value { Value = 3000 };
        var id = await c.StartNewAsync(podId, pod, ok);
        Assert.Equal("0:3000", (await c.ExecOkAsync(id, "sh", "-c", "echo $(id -u):$(id -g)")).Trim());

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task UpdateResources_OutOfRange_IsInvalidArgument_NamingTheCriField_AndChangesNothing()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var volume = Directory.CreateDirectory(Path.Combine(d.Dir, "volume")).FullName;
        var pod = KubeletPod(d, "update");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, KubeletContainer("app", image, volume, "sleep", "3600"));

        var cases = new (string What, string Field, LinuxContainerResources Resources)[]
        {
            ("cpu shares 1", "linux.cpu_shares", new LinuxContainerResources { CpuShares = 1 }),
            ("a cpuset that is no list", "linux.cpuset_cpus", new LinuxContainerResources { CpusetCpus = "0-a" }),
            ("a unified key ..", "linux.unified", new LinuxContainerResources { Unified = { [".."] = "1" } }),
        };
        foreach (var (what, field, resources) in cases)
        {
            await Refused(async () => await c.Runtime.UpdateContainerResourcesAsync(new UpdateContainerResourcesRequest { ContainerId = id, Linux = resources }), field, what);
            await Refused(async () => await c.Runtime.UpdatePodSandboxResourcesAsync(new UpdatePodSandboxResourcesRequest { PodSandboxId = podId, Resources = resources }),
                "resources." + field["linux.".Length..], "pod: " + what);
        }
        // Nothing was applied or recorded.
        var status = await c.StatusAsync(id);
        Assert.Equal(102, status.Resources.Linux.CpuShares);
        Assert.Equal("", status.Resources.Linux.CpusetCpus);
        Assert.Equal(ContainerState.ContainerRunning, status.State);

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task RunPodSandbox_DnsWithControlCharacters_OrBadPodResources_IsInvalidArgument_NamingTheEntry_AndLeavesNoPod()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();

        var cases = new (string What, string Field, Action<PodSandboxConfig> Break)[]
        {
            ("a second nameserver smuggled in", "config.dns_config.servers[1]", p => p.DnsConfig.Servers.Add("10.96.0.11\nnameserver 6.6.6.6")),
            ("a search domain with a carriage return", "config.dns_config.searches[0]", p => p.DnsConfig.Searches[0] = "e2e.svc.cluster.local\r"),
            ("an option with a newline", "config.dns_config.options[0]", p => p.DnsConfig.Options[0] = "ndots:5\noptions rotate"),
            ("an option with NUL", "config.dns_config.options[1]", p => p.DnsConfig.Options.Add("edns0\0")),
            ("pod cpu shares 1", "config.linux.resources.cpu_shares", p => p.Linux.Resources = new LinuxContainerResources { CpuShares = 1 }),
        };
        foreach (var (what, field, breakIt) in cases)
        {
            var pod = KubeletPod(d, "dns");
            breakIt(pod);
            await Refused(() => c.RunPodAsync(pod), field, what);
        }
        Assert.Empty((await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items);
        Assert.Empty(net.Leases());
    }

    [Fact]
    public async Task ExecSync_TimeoutBeyondATimeSpan_IsInvalidArgument_NamingTimeout_ALongOneRuns()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var volume = Directory.CreateDirectory(Path.Combine(d.Dir, "volume")).FullName;
        var pod = KubeletPod(d, "exec");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, KubeletContainer("app", image, volume, "sleep", "3600"));

        foreach (var timeout in new[] { long.MaxValue, 922_337_203_686L })
            await Refused(async () => await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "true" }, Timeout = timeout }), "timeout: ", $"timeout {timeout}");
        // Longer than a wait handle takes (~24.8 days) but a TimeSpan: runs, as with no timeout.
        foreach (var timeout in new[] { 922_337_203_685L, 10_000_000L })
        {
            var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "echo", "ran" }, Timeout = timeout });
            Assert.Equal(0, r.ExitCode);
            Assert.Equal("ran", r.Stdout.ToStringUtf8().Trim());
        }

        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Theory]
    [InlineData("/runtime.v1.RuntimeService/RunPodSandbox", "RunPodSandboxRequest")]
    [InlineData("/runtime.v1.RuntimeService/CreateContainer", "CreateContainerRequest")]
    [InlineData("/runtime.v1.RuntimeService/GetContainerEvents", "GetEventsRequest")] // server streaming
    [InlineData("/runtime.v1.ImageService/PullImage", "PullImageRequest")]
    public async Task MalformedProtobufRequest_IsInvalidArgument_NotUnknown(string fullName, string message)
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var parts = fullName.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var raw = Marshallers.Create((byte[] b) => b, b => b);
        var streaming = fullName.EndsWith("GetContainerEvents", StringComparison.Ordinal);
        var method = new Method<byte[], byte[]>(streaming ? MethodType.ServerStreaming : MethodType.Unary, parts[0], parts[1], raw, raw);
        // Field 1, length-delimited, claiming 127 bytes that are not there; then a bare end-group tag.
        foreach (var garbage in new byte[][] { [0x0a, 0x7f, 0x01], [0x0c], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01] })
        {
            var e = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                if (!streaming)
                {
                    await c.Invoker.AsyncUnaryCall(method, null, new CallOptions(), garbage);
                    return;
                }
                using var call = c.Invoker.AsyncServerStreamingCall(method, null, new CallOptions(), garbage);
                while (await call.ResponseStream.MoveNext(CancellationToken.None)) { }
            });
            Assert.True(e.StatusCode == StatusCode.InvalidArgument, $"{Convert.ToHexString(garbage)}: {e.StatusCode} {e.Status.Detail}");
            Assert.Contains(message, e.Status.Detail);
        }
        // The daemon serves on.
        Assert.NotEmpty((await c.Runtime.VersionAsync(new VersionRequest())).RuntimeName);
    }
}
