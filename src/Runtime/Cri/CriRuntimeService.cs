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
    CniNetwork network,
    PodSandboxStore pods,
    ContainerStore containers,
    Pods.PodSandboxController podCtl,
    Containers.ContainerController containerCtl,
    Images.IImageResolver images,
    Containers.ShimRunner shims,
    Containers.ContainerEvents events,
    StreamServerClient streaming,
    Storage.IWritableVolumes volumes,
    TimeProvider clock,
    ILogger<CriRuntimeService> log,
    PartitionView.Lxcfs? lxcfs = null,
    Metrics.RuntimeMetrics? metrics = null,
    ConfigSource? configSource = null) : RuntimeService.RuntimeServiceBase
{
    /// <summary>The partition /proc view's lxcfs (RunPodSandbox refuses a pod asking for it when it
    /// is not healthy; Status reports it); null where a test runs without one.</summary>
    private readonly PartitionView.Lxcfs? _lxcfs = lxcfs;
    /// <summary>The config in force: what a reload (SIGHUP) may change is read from here per request.</summary>
    private CriRuntimeConfig InForce => configSource?.Current ?? _config;
    private readonly Metrics.RuntimeMetrics? _metrics = metrics;
    /// <summary>For what an RPC file logs itself (CheckpointContainer's outcome and leftovers).</summary>
    private readonly ILogger _log = log;
    private readonly CriRuntimeConfig _config = config;
    private readonly RuntimeConfigStore _runtimeConfig = runtimeConfig;
    private readonly CniNetwork _network = network;
    private readonly PodSandboxStore _pods = pods;
    private readonly ContainerStore _containers = containers;
    /// <summary>Pod and container lifecycles (run/stop/remove, create/start/stop/remove): the
    /// RPC files validate and convert, the controllers make and undo.</summary>
    private readonly Pods.PodSandboxController _podCtl = podCtl;
    private readonly Containers.ContainerController _containerCtl = containerCtl;
    private readonly Images.IImageResolver _images = images;
    private readonly Containers.ShimRunner _shims = shims;
    private readonly Containers.ContainerEvents _events = events;
    /// <summary>Disk-quota volumes: writable-layer usage from their own accounting, the backend for Status.</summary>
    private readonly Storage.IWritableVolumes _volumes = volumes;
    private readonly StreamServerClient _streaming = streaming;
    private readonly TimeProvider _clock = clock;

    /// <summary>Whether CreateContainer restores from checkpoint archives now ([checkpoint] restore).</summary>
    internal bool RestoreEnabled => InForce.Checkpoint.Restore;

    private long NowNanos() => Containers.ExitMonitor.Nanos(_clock.GetUtcNow());
}
