using CriRuntime.Config;
using CriRuntime.Cri;
using CriRuntime.Cri.V1;
using CriRuntime.Network;
using CriRuntime.Server;
using CriRuntime.Streaming;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Controllers;

/// <summary>The RPC handlers themselves, called the way gRPC calls them: through the error
/// interceptor (the one boundary where typed errors become status codes), over the controllers
/// and their fakes. No root, no kernel: what a kubelet request turns into, and what it gets back.</summary>
public sealed class HandlerTests : IDisposable
{
    private readonly ControllerFixture _f = new();
    private readonly CriRuntimeService _service;
    private readonly CriErrorInterceptor _boundary = new(NullLogger<CriErrorInterceptor>.Instance);

    public HandlerTests()
    {
        var config = _f.Config;
        _service = new CriRuntimeService(config, new CriRuntime.State.RuntimeConfigStore(config.Root),
            new CniNetwork(config, new CniConfigProbe(config), new CniPlugins(config), NullLogger<CniNetwork>.Instance),
            _f.Pods, _f.Containers, _f.PodController, _f.ContainerController, _f.Images, new CriRuntime.Containers.ShimRunner(config), _f.Events,
            new StreamServerClient(config, new StreamTargets(_f.Containers, _f.Pods), NullLogger<StreamServerClient>.Instance), _f.Volumes,
            TimeProvider.System, NullLogger<CriRuntimeService>.Instance);
    }

    public void Dispose() => _f.Dispose();

    private Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request, Func<TRequest, ServerCallContext, Task<TResponse>> handler)
        where TRequest : class where TResponse : class =>
        _boundary.UnaryServerHandler(request, new TestCallContext($"/runtime.v1.RuntimeService/{method}"), (r, c) => handler(r, c));

    /// <summary>A pod as the kubelet asks for one (kuberuntime_sandbox.go: metadata, hostname,
    /// log directory, labels, the pid namespace per container).</summary>
    private RunPodSandboxRequest KubeletPod() => new()
    {
        Config = new PodSandboxConfig
        {
            Metadata = new PodSandboxMetadata { Name = "web", Namespace = "default", Uid = "6e1c8c1e-0000-4000-8000-000000000001", Attempt = 0 },
            Hostname = "web",
            LogDirectory = Path.Combine(_f.Root, "var/log/pods/default_web_6e1c8c1e-0000-4000-8000-000000000001"),
            Labels = { ["io.kubernetes.pod.name"] = "web", ["io.kubernetes.pod.namespace"] = "default" },
            Linux = new LinuxPodSandboxConfig
            {
                CgroupParent = "",
                SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Container } },
            },
        },
    };

    private static CreateContainerRequest KubeletContainer(string podId, PodSandboxConfig pod) => new()
    {
        PodSandboxId = podId,
        SandboxConfig = pod,
        Config = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = "app", Attempt = 0 },
            Image = new ImageSpec { Image = ControllerFixtureImage, UserSpecifiedImage = "busybox" },
            Command = { "sleep", "1000" },
            LogPath = "app/0.log",
            Labels = { ["io.kubernetes.container.name"] = "app", ["io.kubernetes.pod.name"] = "web" },
            Annotations = { ["io.kubernetes.container.restartCount"] = "0" },
        },
    };

    private const string ControllerFixtureImage = FakeImages.Id;

    [Fact]
    public async Task APodAndItsContainer_RunCreateStart_AreListedAndStatusedAsTheKubeletSentThem()
    {
        var podReq = KubeletPod();
        var podId = (await CallAsync("RunPodSandbox", podReq, _service.RunPodSandbox)).PodSandboxId;
        var id = (await CallAsync("CreateContainer", KubeletContainer(podId, podReq.Config), _service.CreateContainer)).ContainerId;
        await CallAsync("StartContainer", new StartContainerRequest { ContainerId = id }, _service.StartContainer);

        var listed = await CallAsync("ListContainers", new ListContainersRequest
        {
            Filter = new ContainerFilter { PodSandboxId = podId, LabelSelector = { ["io.kubernetes.container.name"] = "app" } },
        }, _service.ListContainers);
        var c = Assert.Single(listed.Containers);
        Assert.Equal(id, c.Id);
        Assert.Equal(ContainerState.ContainerRunning, c.State);

        var none = await CallAsync("ListContainers", new ListContainersRequest
        {
            Filter = new ContainerFilter { LabelSelector = { ["io.kubernetes.container.name"] = "other" } },
        }, _service.ListContainers);
        Assert.Empty(none.Containers);

        var status = (await CallAsync("ContainerStatus", new ContainerStatusRequest { ContainerId = id }, _service.ContainerStatus)).Status;
        Assert.Equal(ContainerState.ContainerRunning, status.State);
        Assert.Equal("busybox", status.Image.UserSpecifiedImage);
        Assert.Equal("0", status.Annotations["io.kubernetes.container.restartCount"]);
        Assert.Equal(Path.Combine(podReq.Config.LogDirectory, "app/0.log"), status.LogPath);

        var pod = (await CallAsync("PodSandboxStatus", new PodSandboxStatusRequest { PodSandboxId = podId }, _service.PodSandboxStatus)).Status;
        Assert.Equal(PodSandboxState.SandboxReady, pod.State);
        Assert.Equal("web", pod.Labels["io.kubernetes.pod.name"]);
    }

    [Theory]
    [InlineData("uid", "config.metadata.uid")]
    [InlineData("log_directory", "config.log_directory")]
    [InlineData("net_sysctl_on_host_network", "config.linux.sysctls")]
    public async Task ABadPodRequest_IsInvalidArgumentNamingTheField_AndNothingIsMade(string bad, string field)
    {
        var req = KubeletPod();
        switch (bad)
        {
            case "uid": req.Config.Metadata.Uid = ""; break;
            case "log_directory": req.Config.LogDirectory = "relative/logs"; break;
            default:
                req.Config.Linux.SecurityContext.NamespaceOptions.Network = NamespaceMode.Node;
                req.Config.Linux.Sysctls["net.ipv4.ip_forward"] = "1";
                break;
        }

        var e = await Assert.ThrowsAsync<RpcException>(() => CallAsync("RunPodSandbox", req, _service.RunPodSandbox));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.StartsWith(field, e.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_f.Log.Steps);
        Assert.Empty(_f.Pods.All);
    }

    [Fact]
    public async Task CreateContainer_InAPodThatDoesNotExist_IsNotFound_AndNothingIsMade()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() =>
            CallAsync("CreateContainer", KubeletContainer("0123456789abcdef", KubeletPod().Config), _service.CreateContainer));

        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Contains("0123456789abcdef", e.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_f.Containers.All);
        Assert.DoesNotContain(_f.Log.Steps, s => s.StartsWith("rootfs", StringComparison.Ordinal));
    }

    [Fact]
    public async Task CreateContainer_WithAnImpossibleResource_IsInvalidArgumentNamingIt_BeforeTheRootfsIsMounted()
    {
        var podReq = KubeletPod();
        var podId = (await CallAsync("RunPodSandbox", podReq, _service.RunPodSandbox)).PodSandboxId;
        var req = KubeletContainer(podId, podReq.Config);
        req.Config.Linux = new LinuxContainerConfig { Resources = new LinuxContainerResources { CpuPeriod = -1 } };
        _f.Log.Steps.Clear();

        var e = await Assert.ThrowsAsync<RpcException>(() => CallAsync("CreateContainer", req, _service.CreateContainer));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.StartsWith("config.linux.resources.cpu_period", e.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_f.Log.Steps);
        Assert.Empty(_f.Containers.All);
    }

    [Fact]
    public async Task StopAndRemove_OfAPodThatIsGone_Succeed_AsTheKubeletRetriesThem()
    {
        var podId = (await CallAsync("RunPodSandbox", KubeletPod(), _service.RunPodSandbox)).PodSandboxId;

        await CallAsync("StopPodSandbox", new StopPodSandboxRequest { PodSandboxId = podId }, _service.StopPodSandbox);
        await CallAsync("RemovePodSandbox", new RemovePodSandboxRequest { PodSandboxId = podId }, _service.RemovePodSandbox);
        await CallAsync("StopPodSandbox", new StopPodSandboxRequest { PodSandboxId = podId }, _service.StopPodSandbox);
        await CallAsync("RemovePodSandbox", new RemovePodSandboxRequest { PodSandboxId = podId }, _service.RemovePodSandbox);

        Assert.Empty(_f.Pods.All);
        Assert.Empty((await CallAsync("ListPodSandbox", new ListPodSandboxRequest(), _service.ListPodSandbox)).Items);
    }
}
