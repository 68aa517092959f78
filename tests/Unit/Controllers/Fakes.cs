using System.Text.RegularExpressions;
using CriRuntime.Cgroups;
using CriRuntime.Config;
using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Images;
using CriRuntime.Images.Oci;
using CriRuntime.Namespaces;
using CriRuntime.Network;
using CriRuntime.Pods;
using CriRuntime.Shim.Client;
using CriRuntime.State;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Controllers;

/// <summary>What the fakes were asked to do, in order, and what they still hold (made and not
/// undone). A step whose name starts with <see cref="FailAt"/> throws instead of being done.</summary>
public sealed partial class StepLog
{
    public List<string> Steps { get; } = [];
    public HashSet<string> Live { get; } = [];
    public string? FailAt { get; set; }

    /// <summary>Steps with ids (64 hex digits) written as ID, so tests can name them.</summary>
    public IReadOnlyList<string> Named => [.. Steps.Select(s => HexId().Replace(s, "ID"))];

    public void Do(string step, string? holds = null)
    {
        if (FailAt is not null && step.StartsWith(FailAt, StringComparison.Ordinal))
            throw new IOException($"injected failure: {step}");
        Steps.Add(step);
        if (holds is not null) Live.Add(holds);
    }

    public void Undo(string step, string holds)
    {
        Steps.Add(step);
        Live.Remove(holds);
    }

    [GeneratedRegex("[0-9a-f]{64}")]
    private static partial Regex HexId();
}

public sealed class FakeNamespaces(StepLog log) : IPodNamespaces
{
    private static string Kind(NamespaceKind k) => k.ToString().ToLowerInvariant();

    public void Pin(NamespaceKind kind, string path, Action? inside = null)
    {
        log.Do($"pin {Kind(kind)}");
        inside?.Invoke();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "");
        log.Live.Add($"ns {path}");
    }

    public void PinExisting(string source, string path)
    {
        log.Do($"pin {Path.GetFileName(path)} from {source}");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "");
        log.Live.Add($"ns {path}");
    }

    public void RunIn(NamespaceKind kind, string path, Action action)
    {
        log.Do($"enter {Kind(kind)}");
        action();
    }

    public void Unpin(string path)
    {
        if (File.Exists(path)) File.Delete(path);
        log.Undo($"unpin {Path.GetFileName(path)}", $"ns {path}");
    }

    public void SetHostname(string hostname) => log.Do($"hostname {hostname}");
    public void WriteSysctl(string key, string value) => log.Do($"sysctl {key}={value}");

    public Task<PodUserNamespace.Pins> CreateUserNamespaceAsync(string nsDir, IDMapping uid, IDMapping gid, CancellationToken ct)
    {
        log.Do("userns");
        Directory.CreateDirectory(nsDir);
        var pins = new PodUserNamespace.Pins(Path.Combine(nsDir, "user"), Path.Combine(nsDir, "net"), Path.Combine(nsDir, "ipc"), Path.Combine(nsDir, "uts"));
        foreach (var p in pins.All) { File.WriteAllText(p, ""); log.Live.Add($"ns {p}"); }
        return Task.FromResult(pins);
    }
}

public sealed class FakePodInit(StepLog log) : IPodInit
{
    public const int Pid = 4242;
    public bool Running { get; set; } = true;

    public Task<int> StartAsync(string podId, string? userNs, CancellationToken ct)
    {
        log.Do("init start", $"init {podId}");
        return Task.FromResult(Pid);
    }

    public Task StopAsync(int pid, string podId)
    {
        log.Undo("init stop", $"init {podId}");
        return Task.CompletedTask;
    }

    public bool IsRunning(int pid, string podId)
    {
        log.Do("init running?");
        return Running;
    }
}

public sealed class FakeNetwork(StepLog log) : IPodNetwork
{
    public Task<PodNetworkStatus> SetUpAsync(PodNetworkRequest req, CancellationToken ct)
    {
        log.Do("network setup", $"network {req.PodId}");
        return Task.FromResult(new PodNetworkStatus("fake-net", ["10.88.0.7"]));
    }

    public Task TearDownAsync(string podId, CancellationToken ct)
    {
        log.Undo("network teardown", $"network {podId}");
        return Task.CompletedTask;
    }
}

public sealed class FakeCgroups(StepLog log) : ICgroupManagerFactory
{
    public ICgroupManager Create(string path) => new Manager(log, path);

    private sealed class Manager(StepLog log, string path) : ICgroupManager
    {
        public string Path => path;
        public void Create(CgroupResources resources) => log.Do($"cgroup create {path}", $"cgroup {path}");
        public void AddProcess(int pid) => log.Do($"cgroup add {pid} {path}");
        public void Destroy() => log.Undo($"cgroup destroy {path}", $"cgroup {path}");
        public void Update(CgroupResources resources) => log.Do($"cgroup update {path}");
        public CgroupStats Stats() => throw new NotSupportedException();
        public IReadOnlyList<int> Processes() => [];
        public void Freeze() => throw new NotSupportedException();
        public void Thaw() => throw new NotSupportedException();
        public void KillAll() => log.Do($"cgroup kill {path}");
        public bool OomKilled() => false;
    }
}

/// <summary>A shim per container, in memory: create makes a created container, start a running
/// one, stop/kill an exited one (137).</summary>
public sealed class FakeShims(StepLog log) : IShimRunner
{
    private readonly Dictionary<string, ShimState> _states = [];

    /// <summary>The shim dies (killed) when asked to start: the connection breaks, its state says exited.</summary>
    public bool DieOnStart { get; set; }

    public Task<(int ShimPid, int Pid)> CreateAsync(string id, string bundle, string stateDir, string logPath, string handler, CancellationToken ct, Action<string, double>? step = null)
    {
        log.Do("shim create", $"shim {stateDir}");
        Directory.CreateDirectory(stateDir);
        _states[stateDir] = new ShimState { Id = id, Status = ShimStatus.Created, ShimPid = 100, Pid = 101 };
        return Task.FromResult((100, 101));
    }

    public Task<ShimState> StartAsync(string stateDir, CancellationToken ct, Action<string, double>? step = null)
    {
        log.Do("shim start");
        if (DieOnStart)
        {
            _states[stateDir] = ShimClient.ShimDied(_states[stateDir], _states[stateDir].Id, DateTimeOffset.UnixEpoch.AddSeconds(5));
            throw new ShimGoneException(stateDir, new IOException("connection reset"));
        }
        var s = _states[stateDir] = _states[stateDir] with { Status = ShimStatus.Running, StartedAt = DateTimeOffset.UnixEpoch.AddSeconds(10) };
        return Task.FromResult(s);
    }

    public Task StopAsync(string stateDir, int signal, TimeSpan timeout, CancellationToken ct)
    {
        log.Do($"shim stop {signal}");
        Exit(stateDir);
        return Task.CompletedTask;
    }

    public Task KillAsync(string stateDir, int signal, CancellationToken ct)
    {
        log.Undo($"shim kill {signal}", $"shim {stateDir}");
        Exit(stateDir);
        return Task.CompletedTask;
    }

    private void Exit(string stateDir)
    {
        if (_states.TryGetValue(stateDir, out var s) && s.Status != ShimStatus.Stopped)
            _states[stateDir] = s with { Status = ShimStatus.Stopped, ExitCode = 137, Reason = "Error", FinishedAt = DateTimeOffset.UnixEpoch.AddSeconds(20) };
        log.Live.Remove($"shim {stateDir}");
    }

    public Task<ShimState> WaitAsync(string id, string stateDir, CancellationToken ct)
    {
        log.Do("shim wait");
        return Task.FromResult(_states.GetValueOrDefault(stateDir) ?? ShimClient.ShimDied(null, id, DateTimeOffset.UnixEpoch));
    }

    public Task<ShimState> StateAsync(string id, string stateDir, CancellationToken ct) =>
        Task.FromResult(_states.GetValueOrDefault(stateDir) ?? ShimClient.ShimDied(null, id, DateTimeOffset.UnixEpoch));

    public bool IsAlive(string stateDir) => _states.TryGetValue(stateDir, out var s) && s.Status != ShimStatus.Stopped;
}

public sealed class FakeRootfs(StepLog log) : IContainerRootfs
{
    public void Mount(IReadOnlyList<string> layers, string upper, string work, string target)
    {
        log.Do("rootfs mount", $"rootfs {target}");
        Directory.CreateDirectory(target);
    }

    public void MountIdmapped(IReadOnlyList<string> layers, string upper, string work, string target, string usernsPath, string stagingDir, uint rootUid, uint rootGid)
    {
        log.Do($"rootfs mount idmapped {rootUid}:{rootGid}", $"rootfs {target}");
        Directory.CreateDirectory(target);
    }

    public void Unmount(string target) => log.Undo("rootfs unmount", $"rootfs {target}");
}

/// <summary>Writable volumes as directories: records create and release, holds the volume while it lives.</summary>
public sealed class FakeVolumes(StepLog log) : CriRuntime.Storage.IWritableVolumes
{
    public string Backend => "fake";

    public CriRuntime.Storage.WritableVolume Create(string image, string mountPoint, ulong sizeBytes, CriRuntime.Storage.WritableVolume? pod = null)
    {
        log.Do($"volume create {sizeBytes}", $"volume {image}");
        Directory.CreateDirectory(mountPoint);
        return new CriRuntime.Storage.WritableVolume(image, mountPoint, sizeBytes) { Device = "/dev/loop7" };
    }

    public CriRuntime.Storage.WritableVolume? Reattach(CriRuntime.Storage.WritableVolume volume) => null;
    public void Release(CriRuntime.Storage.WritableVolume volume) => log.Undo("volume release", $"volume {volume.Image}");
    public void Unmount(string mountPoint) { }
    public CriRuntime.Kernel.FsUsage? Usage(CriRuntime.Storage.WritableVolume volume) => null;
}

/// <summary>Records exits as the exit monitor does (once), without watching.</summary>
public sealed class FakeExits(ContainerStore containers, StepLog log) : IContainerExits
{
    public List<string> Watched { get; } = [];

    public void Watch(ContainerRecord c) => Watched.Add(c.Id);

    public Task<ContainerRecord?> RecordExitAsync(string id, ShimState final) => Task.FromResult(RecordExitHeld(id, final));

    public ContainerRecord? RecordExitHeld(string id, ShimState final)
    {
        var c = containers.Find(id);
        if (c is null || c.State == ContainerPhase.Exited) return c;
        log.Do("record exit");
        return containers.Transition(id, ContainerPhase.Exited, r => r with { ExitCode = final.ExitCode ?? -1, Reason = final.Reason ?? "", Message = final.Message ?? "" });
    }

    public void RemoveOrphanedCgroup(ContainerRecord c) => log.Do("remove orphaned cgroup");

    /// <summary>What <see cref="Released"/> answers (nothing, as after a daemon restart, unless set).</summary>
    public Dictionary<string, ExitRelease> Releases { get; } = [];

    public Task ShimExitedAsync(string id, TimeSpan grace, CancellationToken ct) => Task.CompletedTask;

    public ExitRelease Released(string id) => Releases.GetValueOrDefault(id);

    public void Forget(string id) => Releases.Remove(id);
}

public sealed class FakeImages(string layerDir) : IImageResolver
{
    public const string Id = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    public string? StopSignal { get; set; }

    public ResolvedImage Resolve(string image) => new(Id,
        new ImageRecord(Id, ["busybox:latest"], [], "sha256:m", [], [], 0, DateTimeOffset.UnixEpoch),
        new ImageConfigFile(null, null, "amd64", "linux", null, new ContainerDefaults(null, null, null, ["sh"], null, StopSignal, null, null, null), null),
        [layerDir]);

    public ImageRecord? Find(string image) => null;

    public IReadOnlyDictionary<string, string> Annotations(ImageRecord image) => new Dictionary<string, string>();

    public Stream OpenLayer(LayerRecord layer) => throw new FileNotFoundException(layer.Digest);
}

/// <summary>Both controllers over fakes, with their stores in a temp directory.</summary>
public sealed class ControllerFixture : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory("criruntime-ctl-").FullName;
    public StepLog Log { get; } = new();
    public CriRuntimeConfig Config { get; }
    public PodSandboxStore Pods { get; }
    public ContainerStore Containers { get; }
    public FakeImages Images { get; }
    public ImageUsage Usage { get; } = new();
    public FakePodInit PodInit { get; }
    /// <summary>Records the pod's own mounts (its /dev/shm tmpfs).</summary>
    public Kernel.RecordingHostKernel HostKernel { get; }
    public FakeShims Shims { get; }
    public FakeExits Exits { get; }
    public ContainerEvents Events { get; } = new();
    public ContainerController ContainerController { get; }
    public FakeVolumes Volumes { get; }
    public PodSandboxController PodController { get; }

    public ControllerFixture()
    {
        Config = new CriRuntimeConfig { Root = Path.Combine(Root, "root"), State = Path.Combine(Root, "state") };
        Pods = new PodSandboxStore(Config.Root);
        Containers = new ContainerStore(Config.Root);
        Directory.CreateDirectory(Path.Combine(Root, "layer"));
        Images = new FakeImages(Path.Combine(Root, "layer"));
        PodInit = new FakePodInit(Log);
        HostKernel = new Kernel.RecordingHostKernel();
        Volumes = new FakeVolumes(Log);
        Shims = new FakeShims(Log);
        Exits = new FakeExits(Containers, Log);
        ContainerController = new ContainerController(Config, Containers, Images, Usage, Shims, new FakeRootfs(Log), Volumes, Events, Exits,
            TimeProvider.System, NullLogger<ContainerController>.Instance);
        PodController = new PodSandboxController(Config, Pods, ContainerController, Volumes, new FakeNamespaces(Log), PodInit, new FakeNetwork(Log),
            new FakeCgroups(Log), TimeProvider.System, NullLogger<PodSandboxController>.Instance, HostKernel);
    }

    public static PodSandboxPlan Plan(Action<PodSandboxConfig>? edit = null, CgroupResources? limits = null,
        IReadOnlyDictionary<NamespaceKind, IReadOnlyList<KeyValuePair<string, string>>>? sysctls = null)
    {
        var config = new PodSandboxConfig
        {
            Metadata = new PodSandboxMetadata { Name = "web", Namespace = "default", Uid = "uid-1", Attempt = 0 },
            Hostname = "web",
            Linux = new LinuxPodSandboxConfig { SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Container } } },
        };
        edit?.Invoke(config);
        return new PodSandboxPlan
        {
            Request = new RunPodSandboxRequest { Config = config },
            Hostname = "web",
            HostnameFile = "web",
            Sysctls = sysctls ?? new Dictionary<NamespaceKind, IReadOnlyList<KeyValuePair<string, string>>>(),
            Limits = limits,
        };
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
