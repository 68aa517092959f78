using System.Text.Json.Serialization;

namespace CriRuntime.State;

public enum ContainerPhase { Created, Running, Exited, Unknown }

/// <summary>A container as persisted in &lt;root&gt;/containers/&lt;id&gt;/container.json. While the
/// container lives its shim is the authority on its state; once it exited, the exit is copied
/// here so it outlives the shim and its state directory.</summary>
public sealed record ContainerRecord
{
    public required string Id { get; init; }
    public required string PodId { get; init; }
    public required string Name { get; init; }
    public required uint Attempt { get; init; }
    public required long CreatedAtNanos { get; init; }
    public required byte[] Config { get; init; }
    /// <summary>The image id (config digest) and the reference the kubelet asked for.</summary>
    public required string ImageId { get; init; }
    public required string ImageRef { get; init; }
    public required string LogPath { get; init; }
    public required string BundleDir { get; init; }
    public required string StateDir { get; init; }
    public required string CgroupsPath { get; init; }
    public ContainerPhase State { get; init; } = ContainerPhase.Created;
    public long StartedAtNanos { get; init; }
    public long FinishedAtNanos { get; init; }
    public int ExitCode { get; init; }
    public string Reason { get; init; } = "";
    public string Message { get; init; } = "";
    /// <summary>The process identity decided at creation (what ContainerStatus reports as
    /// user.linux); null in records written before it was kept.</summary>
    public ContainerUserRecord? User { get; init; }

    [JsonIgnore]
    public string NameKey => ContainerStore.Key(PodId, Name, Attempt);
}

/// <summary>uid, gid and the groups setgroups(2) gets (the primary gid among them), as the
/// container's process sees them: inside a user namespace, the ids inside it.</summary>
public sealed record ContainerUserRecord(uint Uid, uint Gid, IReadOnlyList<uint> SupplementalGroups);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true, WriteIndented = true)]
[JsonSerializable(typeof(ContainerRecord))]
internal sealed partial class ContainerJson : JsonSerializerContext;

/// <summary>Every container this daemon knows.</summary>
public sealed class ContainerStore
{
    private readonly RecordStore<ContainerRecord> _store;

    public ContainerStore(string root) =>
        _store = new RecordStore<ContainerRecord>(Path.Combine(root, "containers"), "container.json", ContainerJson.Default.ContainerRecord, c => c.Id, "container");

    public static string Key(string podId, string name, uint attempt) => $"{podId}\u0001{name}\u0001{attempt}";

    /// <summary>&lt;root&gt;/containers: every container's directory (bundle, writable layer) is below.</summary>
    public string Dir => _store.Dir;
    public string ContainerDir(string id) => _store.ItemDir(id);
    public IReadOnlyCollection<ContainerRecord> All => _store.All;
    public IEnumerable<ContainerRecord> InPod(string podId) => _store.All.Where(c => c.PodId == podId);
    public ContainerRecord? Find(string id) => _store.Find(id);
    public ContainerRecord? FindByName(string key) => _store.All.FirstOrDefault(c => c.NameKey == key);
    public ContainerRecord Get(string idOrPrefix) => _store.Get(idOrPrefix, "container_id");
    public ContainerRecord? TryGet(string idOrPrefix) => _store.TryGet(idOrPrefix, "container_id");
    public void Save(ContainerRecord c, bool durable = true) => _store.Save(c, durable);
    public void Delete(string id) => _store.Delete(id);
    /// <summary>Container directories without a record: half-created by a crash.</summary>
    public IEnumerable<string> Orphans() => _store.Orphans();
    public Task<IDisposable> LockAsync(string id, CancellationToken ct) => _store.LockAsync(id, ct);

    /// <summary>CreateContainer calls in progress by name key.</summary>
    public SingleFlight Creating { get; } = new();
}
