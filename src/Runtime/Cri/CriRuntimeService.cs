using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Network;
using CriRuntime.State;
using CriRuntime.Streaming;

namespace CriRuntime.Cri;

/// <summary>The CRI RuntimeService. Each RPC lives in its own file (Version.cs, RunPodSandbox.cs, ...)
/// as a part of this class; this file holds only what they share. RPCs without a file answer
/// Unimplemented, named by the interceptor.</summary>
public sealed partial class CriRuntimeService(
    CriRuntimeConfig config,
    RuntimeConfigStore runtimeConfig,
    CniConfigProbe cni,
    CniNetwork network,
    PodSandboxStore pods,
    ContainerStore containers,
    Images.IImageResolver images,
    Images.IImageUsage imageUsage,
    Containers.ShimRunner shims,
    Containers.ContainerEvents events,
    Containers.ExitMonitor exits,
    StreamServerClient streaming,
    TimeProvider clock,
    ILogger<CriRuntimeService> log) : RuntimeService.RuntimeServiceBase
{
    private readonly CriRuntimeConfig _config = config;
    private readonly RuntimeConfigStore _runtimeConfig = runtimeConfig;
    private readonly CniConfigProbe _cni = cni;
    private readonly CniNetwork _network = network;
    private readonly PodSandboxStore _pods = pods;
    private readonly ContainerStore _containers = containers;
    private readonly Images.IImageResolver _images = images;
    private readonly Images.IImageUsage _imageUsage = imageUsage;
    private readonly Containers.ShimRunner _shims = shims;
    private readonly Containers.ContainerEvents _events = events;
    private readonly Containers.ExitMonitor _exits = exits;
    private readonly StreamServerClient _streaming = streaming;
    private readonly TimeProvider _clock = clock;
    private readonly ILogger<CriRuntimeService> _log = log;

    private long NowNanos() => Containers.ExitMonitor.Nanos(_clock.GetUtcNow());
}
