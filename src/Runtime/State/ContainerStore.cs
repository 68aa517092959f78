using System.Text.Json.Serialization;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.State;

public enum ContainerPhase { Created, Running, Exited, Unknown }

/// <summary>A container as persisted in &lt;root&gt;/containers/&lt;id&gt;/container.json. While the
/// container lives its shim is the authority on its state; once it exited, the exit is copied
/// here so it outlives the shim and its state directory.</summary>
public sealed record ContainerRecord
{
    /// <summary>Version of the record's fields; records of an older version are upgraded on load
    /// (see <see cref="ContainerStore.Upgrade"/>).</summary>
    public const int CurrentVersion = 3;
    public int Version { get; init; }
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
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();
    /// <summary>The kubelet's stop signal (CRI enum name, e.g. "Sigquit"); empty for the runtime
    /// default (the image's, else SIGTERM).</summary>
    public string StopSignal { get; init; } = "";
    /// <summary>The container's stdio as created (what attach may do).</summary>
    public bool Stdin { get; init; }
    public bool StdinOnce { get; init; }
    public bool Tty { get; init; }
    /// <summary>The mounts the kubelet declared (ContainerStatus.mounts).</summary>
    public IReadOnlyList<MountRecord> Mounts { get; init; } = [];
    /// <summary>The resources in force: the request's at creation, then each successful update's.</summary>
    public ResourcesRecord? Resources { get; init; }
    /// <summary>The image as the user wrote it in the pod spec (ImageSpec.user_specified_image).</summary>
    public string UserSpecifiedImage { get; init; } = "";
    /// <summary>The size-limited file system holding the writable layer (overlay upper and work
    /// dirs); null without a disk quota (they are then the container directory's upper and work).</summary>
    public Storage.WritableVolume? Volume { get; init; }
    /// <summary>The directory holding the upper and work dirs when the pod's volume holds them and
    /// the container has no volume of its own; null otherwise.</summary>
    public string? LayerDir { get; init; }

    [JsonIgnore]
    public ContainerMetadata Metadata => new() { Name = Name, Attempt = Attempt };

    /// <summary>This record with the strings containers hold alike taken from <paramref name="pool"/>:
    /// the image's id and references, the keys of its labels and annotations.</summary>
    internal ContainerRecord Shared(StringPool pool) => this with
    {
        ImageId = pool.Get(ImageId),
        ImageRef = pool.Get(ImageRef),
        UserSpecifiedImage = pool.Get(UserSpecifiedImage),
        Labels = pool.Keys(Labels),
        Annotations = pool.Keys(Annotations),
    };

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
        _store = new RecordStore<ContainerRecord>(Path.Combine(root, "containers"), "container.json", ContainerJson.Default.ContainerRecord, c => c.Id, "container", Upgrade,
            c => c.Shared(StringPool.Records));

    /// <summary>A record of an earlier version with the fields it lacked taken from its config (the
    /// request as the kubelet sent it, kept verbatim and never rewritten: an earlier version
    /// rewrote its resources on update, so they are the ones in force).</summary>
    internal static ContainerRecord Upgrade(ContainerRecord c)
    {
        if (c.Version >= ContainerRecord.CurrentVersion) return c;
        var config = ContainerConfig.Parser.ParseFrom(c.Config);
        return c with
        {
            Version = ContainerRecord.CurrentVersion,
            Labels = new Dictionary<string, string>(config.Labels),
            Annotations = new Dictionary<string, string>(config.Annotations),
            StopSignal = StopSignalOf(config),
            Stdin = config.Stdin,
            StdinOnce = config.StdinOnce,
            Tty = config.Tty,
            Mounts = [.. config.Mounts.Select(MountRecord.From)],
            Resources = ResourcesRecord.From(config.Linux?.Resources),
            UserSpecifiedImage = config.Image?.UserSpecifiedImage ?? "",
        };
    }

    public static string StopSignalOf(ContainerConfig config) => config.StopSignal == Signal.RuntimeDefault ? "" : config.StopSignal.ToString();

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
    /// <summary>A new container's record (see <see cref="Transition"/> and <see cref="Update"/> for changes).</summary>
    public void Add(ContainerRecord c) => _store.Save(c);

    /// <summary>The one way a container's phase changes (the caller holds its lock): created →
    /// running, created/running/unknown → exited; <paramref name="details"/> sets what comes with
    /// it (start time; exit code, reason). Anything else is FailedPrecondition. Persisted
    /// atomically; a failed write leaves the record as it was.</summary>
    /// <param name="durable">false where a reboot voids the change anyway (created → running).</param>
    public ContainerRecord Transition(string id, ContainerPhase to, Func<ContainerRecord, ContainerRecord>? details = null, bool durable = true) =>
        _store.Update(id, c => (c.State, to) switch
        {
            (ContainerPhase.Created, ContainerPhase.Running) or (ContainerPhase.Created or ContainerPhase.Running or ContainerPhase.Unknown, ContainerPhase.Exited) =>
                (details?.Invoke(c) ?? c) with { State = to },
            _ => throw Fail.FailedPrecondition($"container {id} is {c.State.ToString().ToLowerInvariant()}: it cannot become {to.ToString().ToLowerInvariant()}"),
        }, durable);

    /// <summary>A change of what the container holds (its config after a resources update), not of its phase.</summary>
    public ContainerRecord Update(string id, Func<ContainerRecord, ContainerRecord> change) => _store.Update(id, c =>
    {
        var next = change(c);
        return next.State == c.State ? next : throw new InvalidOperationException($"container {id}: phase changes go through Transition");
    });
    /// <param name="discard">Removes the container's directory (see <see cref="RecordStore{T}.Delete"/>).</param>
    public void Delete(string id, Action<string>? discard = null) => _store.Delete(id, discard);
    /// <summary>Container directories without a record: half-created by a crash.</summary>
    public IEnumerable<string> Orphans() => _store.Orphans();
    public Task<IDisposable> LockAsync(string id, CancellationToken ct) => _store.LockAsync(id, ct);

    /// <summary>CreateContainer calls in progress by name key.</summary>
    public SingleFlight Creating { get; } = new();
}
