using System.Text.Json;
using System.Text.Json.Serialization;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.State;

public enum PodState { Ready, NotReady }

/// <summary>A pod as persisted in &lt;root&gt;/pods/&lt;id&gt;/sandbox.json: what was decided when it
/// was made (namespaces, cgroup, network, labels) as typed fields, read as they are. The kubelet's
/// config is also kept verbatim (protobuf bytes) for what only containers' creation consults
/// (DNS, security context, log directory).</summary>
public sealed record PodSandboxRecord
{
    /// <summary>Version of the record's fields; records of an older version are upgraded on load
    /// (see <see cref="PodSandboxStore.Upgrade"/>).</summary>
    public const int CurrentVersion = 3;
    public int Version { get; init; }
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Namespace { get; init; }
    public required string Uid { get; init; }
    public required uint Attempt { get; init; }
    public required PodState State { get; init; }
    public required long CreatedAtNanos { get; init; }
    public string RuntimeHandler { get; init; } = "";
    public required byte[] Config { get; init; }
    /// <summary>Pinned namespace files; null where the pod uses the host's namespace.</summary>
    public string? NetNs { get; init; }
    public string? IpcNs { get; init; }
    public string? UtsNs { get; init; }
    /// <summary>The pod's user namespace (userns_options mode POD), which owns its net, IPC and UTS
    /// namespaces; null in the host's.</summary>
    public string? UserNs { get; init; }
    /// <summary>The pod's shared pid namespace (NamespaceMode POD), pinned from its pod init;
    /// null when each container has its own (or uses the host's).</summary>
    public string? PidNs { get; init; }
    /// <summary>Host pid of the pod init, pid 1 of <see cref="PidNs"/> (see Pods.PodInit).</summary>
    public int? PodInitPid { get; init; }
    public IReadOnlyList<string> Ips { get; init; } = [];
    public string? NetworkName { get; init; }
    /// <summary>The pod's cgroup as decided at creation (the kubelet's cgroup_parent, else one
    /// under the cgroup_root of then): a later cgroup_root does not move it.</summary>
    public string CgroupPath { get; init; } = "";
    /// <summary>Whether the pod cgroup is ours to make and remove (no cgroup_parent given; the
    /// kubelet manages its own).</summary>
    public bool OwnsCgroup { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();
    public required string Dir { get; init; }
    /// <summary>The namespace modes the kubelet asked for (PodSandboxStatus reports them).</summary>
    public NamespaceModesRecord NamespaceModes { get; init; } = NamespaceModesRecord.From(null);
    /// <summary>The pod's resources and overhead in force: the request's at creation, then each
    /// successful UpdatePodSandboxResources's.</summary>
    public ResourcesRecord? Resources { get; init; }
    public ResourcesRecord? Overhead { get; init; }
    /// <summary>The volume every container's writable layer lives in when the pod has a disk
    /// quota (disk-quota.criruntime.io/pod); null without one.</summary>
    public Storage.WritableVolume? Volume { get; init; }
    /// <summary>The host path every container's /dev/shm binds: the pod's own tmpfs
    /// (<see cref="Pods.PodShm"/>), or the host's /dev/shm on the host's IPC namespace. Null for a
    /// pod made before pods had one: its containers keep a tmpfs each.</summary>
    public string? Shm { get; init; }

    [JsonIgnore]
    public PodSandboxMetadata Metadata => new() { Name = Name, Namespace = Namespace, Uid = Uid, Attempt = Attempt };

    /// <summary>This record with the strings pods hold alike taken from <paramref name="pool"/>:
    /// the namespace, runtime handler and network name, the keys of its labels and annotations.</summary>
    internal PodSandboxRecord Shared(StringPool pool) => this with
    {
        Namespace = pool.Get(Namespace),
        RuntimeHandler = pool.Get(RuntimeHandler),
        NetworkName = NetworkName is null ? null : pool.Get(NetworkName),
        Labels = pool.Keys(Labels),
        Annotations = pool.Keys(Annotations),
    };

    [JsonIgnore]
    public string NameKey => PodSandboxStore.Key(Name, Namespace, Uid, Attempt);
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true, WriteIndented = true)]
[JsonSerializable(typeof(PodSandboxRecord))]
internal sealed partial class PodJson : JsonSerializerContext;

/// <summary>Every pod this daemon knows, in memory and on disk (see <see cref="RecordStore{T}"/>).</summary>
public sealed class PodSandboxStore
{
    private readonly RecordStore<PodSandboxRecord> _store;

    /// <param name="cgroupRoot">runtime.cgroup_root: the parent of the pods' cgroups recorded by
    /// versions that did not record the path (those made before it could change).</param>
    public PodSandboxStore(string root, string cgroupRoot = "criruntime") =>
        _store = new RecordStore<PodSandboxRecord>(Path.Combine(root, "pods"), "sandbox.json", PodJson.Default.PodSandboxRecord, p => p.Id, "pod sandbox",
            p => Upgrade(p, cgroupRoot), p => p.Shared(StringPool.Records));

    /// <summary>A record of an earlier version with the fields it lacked taken from its config,
    /// as that version decided them (it rewrote the config's resources on update: they are the
    /// ones in force).</summary>
    internal static PodSandboxRecord Upgrade(PodSandboxRecord p, string cgroupRoot)
    {
        if (p.Version >= PodSandboxRecord.CurrentVersion) return p;
        var config = PodSandboxConfig.Parser.ParseFrom(p.Config);
        var parent = config.Linux?.CgroupParent ?? "";
        return p with
        {
            Version = PodSandboxRecord.CurrentVersion,
            CgroupPath = p.CgroupPath is { Length: > 0 } path ? path : CgroupPathFor(p.Id, parent, cgroupRoot),
            OwnsCgroup = parent.Length == 0,
            Labels = new Dictionary<string, string>(config.Labels),
            Annotations = new Dictionary<string, string>(config.Annotations),
            NamespaceModes = NamespaceModesRecord.From(config.Linux?.SecurityContext?.NamespaceOptions),
            Resources = ResourcesRecord.From(config.Linux?.Resources),
            Overhead = ResourcesRecord.From(config.Linux?.Overhead),
        };
    }

    /// <summary>A pod's cgroup: the kubelet's cgroup_parent, else one under our cgroup root.</summary>
    public static string CgroupPathFor(string podId, string cgroupParent, string cgroupRoot) =>
        cgroupParent.Length > 0 ? cgroupParent.TrimEnd('/') : $"/{cgroupRoot.Trim('/')}/{podId}";

    public string Dir => _store.Dir;

    public static string Key(string name, string ns, string uid, uint attempt) => $"{name}\u0001{ns}\u0001{uid}\u0001{attempt}";

    public string PodDir(string id) => _store.ItemDir(id);
    public IReadOnlyCollection<PodSandboxRecord> All => _store.All;
    public PodSandboxRecord? Find(string id) => _store.Find(id);
    public PodSandboxRecord? FindByName(string key) => _store.All.FirstOrDefault(p => p.NameKey == key);
    public PodSandboxRecord Get(string idOrPrefix) => _store.Get(idOrPrefix, "pod_sandbox_id");
    public PodSandboxRecord? TryGet(string idOrPrefix) => _store.TryGet(idOrPrefix, "pod_sandbox_id");
    /// <summary>A new pod's record (see <see cref="Transition"/> and <see cref="Update"/> for changes).</summary>
    public void Add(PodSandboxRecord pod) => _store.Save(pod);

    /// <summary>The one way a pod's state changes (the caller holds its lock): Ready → NotReady;
    /// NotReady stays NotReady (no write). A pod never becomes Ready again (the kubelet makes a
    /// new one). Persisted atomically; a failed write leaves the record as it was.</summary>
    public PodSandboxRecord Transition(string id, PodState to) => _store.Update(id, p => (p.State, to) switch
    {
        (PodState.Ready, PodState.NotReady) => p with { State = to },
        _ when p.State == to => p,
        _ => throw Fail.FailedPrecondition($"pod sandbox {id} is {p.State}: it cannot become {to}"),
    });

    /// <summary>A change of what the pod holds (its config after a resize), not of its state.</summary>
    public PodSandboxRecord Update(string id, Func<PodSandboxRecord, PodSandboxRecord> change) => _store.Update(id, p =>
    {
        var next = change(p);
        return next.State == p.State ? next : throw new InvalidOperationException($"pod sandbox {id}: state changes go through Transition");
    });
    public void Delete(string id) => _store.Delete(id);
    public Task<IDisposable> LockAsync(string id, CancellationToken ct) => _store.LockAsync(id, ct);

    /// <summary>Directories with no pod record: what a crash left half-made.</summary>
    public IEnumerable<string> Orphans() => _store.Orphans();

    /// <summary>RunPodSandbox calls in progress by name key.</summary>
    public SingleFlight Creating { get; } = new();
}
