using System.Text.Json;
using System.Text.Json.Serialization;
using CriRuntime.Errors;

namespace CriRuntime.State;

public enum PodState { Ready, NotReady }

/// <summary>A pod as persisted in &lt;root&gt;/pods/&lt;id&gt;/sandbox.json. The kubelet's config is
/// kept verbatim (protobuf bytes) so status and containers can consult it after a restart.</summary>
public sealed record PodSandboxRecord
{
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
    public string? CgroupPath { get; init; }
    public required string Dir { get; init; }

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

    public PodSandboxStore(string root) =>
        _store = new RecordStore<PodSandboxRecord>(Path.Combine(root, "pods"), "sandbox.json", PodJson.Default.PodSandboxRecord, p => p.Id, "pod sandbox");

    public string Dir => _store.Dir;

    public static string Key(string name, string ns, string uid, uint attempt) => $"{name}\u0001{ns}\u0001{uid}\u0001{attempt}";

    public string PodDir(string id) => _store.ItemDir(id);
    public IReadOnlyCollection<PodSandboxRecord> All => _store.All;
    public PodSandboxRecord? Find(string id) => _store.Find(id);
    public PodSandboxRecord? FindByName(string key) => _store.All.FirstOrDefault(p => p.NameKey == key);
    public PodSandboxRecord Get(string idOrPrefix) => _store.Get(idOrPrefix, "pod_sandbox_id");
    public PodSandboxRecord? TryGet(string idOrPrefix) => _store.TryGet(idOrPrefix, "pod_sandbox_id");
    public void Save(PodSandboxRecord pod) => _store.Save(pod);
    public void Delete(string id) => _store.Delete(id);
    public Task<IDisposable> LockAsync(string id, CancellationToken ct) => _store.LockAsync(id, ct);

    /// <summary>Directories with no pod record: what a crash left half-made.</summary>
    public IEnumerable<string> Orphans() => _store.Orphans();

    /// <summary>RunPodSandbox calls in progress by name key.</summary>
    public SingleFlight Creating { get; } = new();
}
