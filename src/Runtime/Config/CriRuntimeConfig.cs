namespace CriRuntime.Config;

/// <summary>The daemon's effective configuration: defaults, then /etc/criruntime/config.toml,
/// then conf.d/*.toml drop-ins in name order, then command-line flags. Immutable once loaded.</summary>
public sealed record CriRuntimeConfig
{
    public const string DefaultConfigPath = "/etc/criruntime/config.toml";

    /// <summary>The CRI socket.</summary>
    public string Socket { get; init; } = "/run/criruntime/criruntime.sock";
    /// <summary>Persistent data: images, container state.</summary>
    public string Root { get; init; } = "/var/lib/criruntime";
    /// <summary>Runtime state that a reboot may drop: pinned namespaces, shim sockets.</summary>
    public string State { get; init; } = "/run/criruntime";
    public string LogLevel { get; init; } = "info";
    /// <summary>"text" (one line per record) or "json" (one JSON object per line).</summary>
    public string LogFormat { get; init; } = "text";

    public RuntimeSection Runtime { get; init; } = new();
    public CniSection Cni { get; init; } = new();
    public RegistrySection Registry { get; init; } = new();
    public ImagesSection Images { get; init; } = new();
    public StreamingSection Streaming { get; init; } = new();
    public CheckpointSection Checkpoint { get; init; } = new();
    public PartitionViewSection PartitionView { get; init; } = new();
    public StorageSection Storage { get; init; } = new();
    public MetricsSection Metrics { get; init; } = new();
    public TelemetrySection Telemetry { get; init; } = new();
    public MigrationSection Migration { get; init; } = new();
}

public sealed record RuntimeSection
{
    /// <summary>"cgroupfs" or "systemd"; the kubelet's cgroupDriver must agree.</summary>
    public string CgroupDriver { get; init; } = "cgroupfs";
    /// <summary>The shim binary; empty means criruntime-shim next to the criruntime binary.</summary>
    public string ShimPath { get; init; } = "";
    /// <summary>Parent cgroup of pods the kubelet gives no cgroup_parent (crictl, tests).</summary>
    public string CgroupRoot { get; init; } = "criruntime";
    /// <summary>pids.max of every container's cgroup; 0 leaves it unlimited (the kubelet's
    /// podPidsLimit, on the pod cgroup, is then the bound). The CRI has no per-container value.</summary>
    public long PidsLimit { get; init; }
    /// <summary>How long a shim has to answer a request beyond what the request itself takes (a
    /// stop's grace period, an exec's timeout). A shim that misses it fails the request with
    /// DeadlineExceeded; one that misses a stop or a SIGKILL is killed, and its container with it.</summary>
    public TimeSpan ShimAnswerTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>The largest pid the kernel can hand out (PID_MAX_LIMIT on 64-bit).</summary>
    public const long MaxPidsLimit = 4_194_304;
    /// <summary>[runtime.handlers.NAME]: the RuntimeClass handlers accepted besides the default
    /// ("" or "criruntime"), by name.</summary>
    public IReadOnlyDictionary<string, RuntimeHandlerConfig> Handlers { get; init; } = new Dictionary<string, RuntimeHandlerConfig>();

    /// <summary>The name the default handler also answers to.</summary>
    public const string DefaultHandler = "criruntime";
}

/// <summary>One runtime handler: the shim that runs its pods' containers (empty: runtime.shim_path).</summary>
public sealed record RuntimeHandlerConfig
{
    public string ShimPath { get; init; } = "";
    /// <summary>Every pod of this handler (RuntimeClass) gets the partition's /proc view
    /// (docs/partition-view.md) unless its annotation says "false".</summary>
    public bool ProcView { get; init; }
}

public sealed record CniSection
{
    public string ConfDir { get; init; } = "/etc/cni/net.d";
    public IReadOnlyList<string> BinDirs { get; init; } = ["/usr/lib/cni", "/opt/cni/bin"];
}

public sealed record RegistrySection
{
    /// <summary>Hosts (host or host:port) reached over plain http. 127.0.0.1 and localhost always are.</summary>
    public IReadOnlyList<string> Insecure { get; init; } = [];
    /// <summary>Per registry host, mirror endpoints tried in order before the registry itself.</summary>
    public IReadOnlyDictionary<string, RegistryMirror> Mirrors { get; init; } = new Dictionary<string, RegistryMirror>();
}

public sealed record RegistryMirror(IReadOnlyList<string> Endpoints);

public sealed record ImagesSection
{
    /// <summary>Image references never garbage collected; reported pinned to the kubelet.</summary>
    public IReadOnlyList<string> Pinned { get; init; } = [];
    /// <summary>A pull that receives no bytes for this long is aborted.</summary>
    public TimeSpan PullProgressTimeout { get; init; } = TimeSpan.FromMinutes(1);
}

public sealed record StreamingSection
{
    public string Address { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port at start.</summary>
    public int Port { get; init; }
    public TimeSpan TokenTtl { get; init; } = TimeSpan.FromMinutes(1);
}

/// <summary>[checkpoint]: CheckpointContainer and restore through CRIU (docs/checkpoint.md).</summary>
public sealed record CheckpointSection
{
    /// <summary>The criu binary; empty: criu on the PATH, else /usr/local/sbin/criu (hack/criu.sh).</summary>
    public string CriuPath { get; init; } = "";
    /// <summary>"KEY=VALUE" entries added to CRIU's environment. CRIU_FAULT=130 (no hardware
    /// breakpoints) by default: in VMs where ptrace hardware breakpoints never fire (Firecracker)
    /// every dump hangs without it; elsewhere it costs a few ptrace steps per thread.</summary>
    public IReadOnlyList<string> CriuEnv { get; init; } = ["CRIU_FAULT=130"];
    /// <summary>Creating containers from a checkpoint archive or checkpoint image: off unless asked
    /// for, since the archive (or the image's layer) is input the caller controls (memory images,
    /// file system changes, a recorded spec).</summary>
    public bool Restore { get; init; }
    /// <summary>A CheckpointContainer without a timeout: CRIU is killed (and the container thawed)
    /// after this long.</summary>
    public TimeSpan DumpTimeout { get; init; } = TimeSpan.FromMinutes(2);
}

/// <summary>[partition_view]: what a partition's processes see of the host (docs/partition-view.md).</summary>
public sealed record PartitionViewSection
{
    /// <summary>Node-wide default of the /proc view (lxcfs) for every pod; a pod's annotation
    /// partition-view.criruntime.io/proc or its handler's proc_view decides first.</summary>
    public bool Proc { get; init; }
    /// <summary>The lxcfs binary; empty: lxcfs on the PATH (Debian's package: /usr/bin/lxcfs).</summary>
    public string LxcfsPath { get; init; } = "";
}

/// <summary>[storage]: containers' writable layers (docs/storage.md).</summary>
public sealed record StorageSection
{
    /// <summary>rootfs_quota: the size every container's writable layer is limited to unless its
    /// annotations say otherwise, in bytes ("512Mi" in the file); 0 for none.</summary>
    public ulong RootfsQuota { get; init; }
    /// <summary>blockio_config_file: block I/O classes in goresctrl's format, chosen by the
    /// annotations io.kubernetes.cri.blockio-class and blockio.resources.beta.kubernetes.io/*;
    /// "" for none. Read at start and at every reload (SIGHUP).</summary>
    public string BlockioConfigFile { get; init; } = "";
    /// <summary>The classes read from <see cref="BlockioConfigFile"/>.</summary>
    public Storage.BlockioClasses Blockio { get; init; } = Storage.BlockioClasses.None;
    /// <summary>volume_pool: warm disk-quota volumes kept ready per quota size in use (at most
    /// four sizes), so CreateContainer does not wait for a loop device and a mount; 0 for none.</summary>
    public int VolumePool { get; init; } = 2;
    /// <summary>quota_backend: how disk quotas are kept (docs/storage.md): "auto" picks from the
    /// storage root's file system (btrfs: qgroups; XFS or ext4 with project quotas on: project
    /// quotas; else the file-backed volume), or one of "volume", "btrfs", "project".</summary>
    public string QuotaBackend { get; init; } = "auto";

    public static readonly string[] QuotaBackends = ["auto", "volume", "btrfs", "project"];
}

/// <summary>[metrics]: the Prometheus endpoint (docs/observability.md).</summary>
public sealed record MetricsSection
{
    /// <summary>"IP:PORT" of the HTTP listener serving /metrics in Prometheus text format
    /// (e.g. "127.0.0.1:9464"); empty: no listener, nothing collected.</summary>
    public string Address { get; init; } = "";
}

/// <summary>[migration]: the node-to-node listener of live migration (docs/migration.md). Fixed
/// at start (a reload keeps it).</summary>
public sealed record MigrationSection
{
    /// <summary>"IP:PORT" of the TCP listener other daemons send pods to, mutual TLS only; empty:
    /// no listener (this node can still be a source, when the three files are set).</summary>
    public string Listen { get; init; } = "";
    /// <summary>This node's certificate (PEM), presented as server and as client.</summary>
    public string CertFile { get; init; } = "";
    /// <summary>Its private key (PEM).</summary>
    public string KeyFile { get; init; } = "";
    /// <summary>The CA (PEM) a peer's certificate must be signed by, both ways.</summary>
    public string CaFile { get; init; } = "";
}

/// <summary>[telemetry]: OpenTelemetry traces exported over OTLP (docs/observability.md, "Traces").</summary>
public sealed record TelemetrySection
{
    /// <summary>The OTLP receiver, an http:// or https:// URL ("http://127.0.0.1:4317" for gRPC,
    /// "http://127.0.0.1:4318" for http/protobuf, where /v1/traces is appended unless the path
    /// names one); empty: no tracing at all, nothing exported, nothing recorded.</summary>
    public string OtlpEndpoint { get; init; } = "";
    /// <summary>"grpc" or "http/protobuf".</summary>
    public string OtlpProtocol { get; init; } = "grpc";
    /// <summary>The share of traces the daemon starts (no sampled caller) that are recorded, 0..1;
    /// a caller's sampling decision in its traceparent is followed (parent-based).</summary>
    public double SamplingRatio { get; init; } = 1.0;
    /// <summary>How long finished spans wait in the batch before they are exported.</summary>
    public TimeSpan ExportInterval { get; init; } = TimeSpan.FromSeconds(5);

    public static readonly string[] Protocols = ["grpc", "http/protobuf"];
}
