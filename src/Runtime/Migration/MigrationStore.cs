using System.Text.Json.Serialization;
using CriRuntime.State;

namespace CriRuntime.Migration;

/// <summary>Which end of a migration this node is.</summary>
public enum MigrationSide { Source, Target }

/// <summary>The phases a migration records, in order (docs/migration.md, "Phases"). Each is
/// written atomically before the step it names has visible effects elsewhere, so a restarted
/// daemon knows what it was doing.</summary>
public static class MigrationPhase
{
    // Source.
    public const string Freezing = "FREEZING", Transferring = "TRANSFERRING", Transferred = "TRANSFERRED",
        Paging = "PAGING", Done = "DONE", Failed = "FAILED";
    // Target.
    public const string Prepared = "PREPARED", Receiving = "RECEIVING", Received = "RECEIVED", Started = "STARTED";
    // Both.
    public const string Committed = "COMMITTED", Aborted = "ABORTED";

    /// <summary>Source phases in which the pod's containers may be frozen by this migration.</summary>
    public static bool SourceMayBeFrozen(string phase) => phase is Freezing or Transferring or Transferred or Paging or Done or Failed;

    /// <summary>Target phases before its containers were started: what a restart or Abort removes.</summary>
    public static bool TargetNotStarted(string phase) => phase is Prepared or Receiving or Received;

    /// <summary>A target whose lazy restore runs without all its memory yet: a restart removes it
    /// (its `criu lazy-pages` is gone, the missing pages can never arrive).</summary>
    public static bool TargetPagesIncomplete(MigrationRecord m) =>
        m.Side == MigrationSide.Target && m.Phase == Started && m.Lazy && !m.PagesArrived;
}

/// <summary>One migration as this node knows it. The source records the cgroups it froze (so a
/// restart or Abort thaws exactly those); the target records the pod it prepared and the
/// container configs the restore will use (the caller's protobuf, replayed into CreateContainer).</summary>
public sealed record MigrationRecord
{
    public required string Id { get; init; }
    public required MigrationSide Side { get; init; }
    public required string Phase { get; init; }
    /// <summary>This node's pod: the source's, or the one PrepareTarget made.</summary>
    public string PodId { get; init; } = "";
    public DateTimeOffset CreatedAt { get; init; }
    public string Error { get; init; } = "";
    /// <summary>The kind of error a FAILED migration answered (a repeated Migrate answers it again).</summary>
    public Errors.ErrorKind FailedKind { get; init; } = Errors.ErrorKind.Aborted;

    // Source.
    public string TargetAddress { get; init; } = "";
    public string Mode { get; init; } = "";
    public List<string> FrozenCgroups { get; init; } = [];
    public string TargetPodId { get; init; } = "";
    public long BytesSent { get; init; }
    public long BytesTotal { get; init; }
    public long DowntimeMs { get; init; }
    public long DumpMs { get; init; }
    public long TransferMs { get; init; }
    public long RestoreMs { get; init; }
    /// <summary>Migrate's allow_new_ip: a target pod with another address is accepted (connections closed).</summary>
    public bool AllowNewIp { get; init; }
    /// <summary>The target's pod has this pod's addresses: connections move established, under the lock.</summary>
    public bool KeptIp { get; init; }
    /// <summary>The pod's links set down by this migration (<see cref="NetworkLock"/>), recorded
    /// before they are: a resumed source sets them up again.</summary>
    public List<string> LockedLinks { get; init; } = [];

    // Target.
    public string RuntimeHandler { get; init; } = "";
    /// <summary>PodSandboxConfig as PrepareTarget received it (protobuf).</summary>
    public byte[] PodConfig { get; init; } = [];
    /// <summary>ContainerConfig of every container to restore (protobuf), in the caller's order.</summary>
    public List<byte[]> ContainerConfigs { get; init; } = [];
    public long BytesReceived { get; init; }
    /// <summary>The connections are restored established (the source's Restore said the pod kept its IP).</summary>
    public bool KeepConnections { get; init; }
    /// <summary>Restored lazily: its memory pages follow from the source's page servers.</summary>
    public bool Lazy { get; init; }
    /// <summary>Lazy: every `criu lazy-pages` exited successfully, so the restored pod has all its
    /// memory. Until then the target does not own the pod (a restart removes it).</summary>
    public bool PagesArrived { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true)]
[JsonSerializable(typeof(MigrationRecord))]
internal sealed partial class MigrationJson : JsonSerializerContext;

/// <summary>Migrations, one directory each under ROOT/migrations: <c>migration.json</c> (the
/// record, written atomically) and, while the pod is in flight, <c>checkpoint/</c> (the pod
/// checkpoint the source wrote or the target received).</summary>
public sealed class MigrationStore(string root)
{
    private readonly RecordStore<MigrationRecord> _records =
        new(Path.Combine(root, "migrations"), "migration.json", MigrationJson.Default.MigrationRecord, m => m.Id, "migration");

    public MigrationRecord? Find(string id) => _records.Find(id);
    public IReadOnlyCollection<MigrationRecord> All => _records.All;
    public void Save(MigrationRecord record) => _records.Save(record);
    public MigrationRecord Update(string id, Func<MigrationRecord, MigrationRecord> change) => _records.Update(id, change);
    public Task<IDisposable> LockAsync(string id, CancellationToken ct) => _records.LockAsync(id, ct);

    /// <summary>The pod checkpoint's directory of a migration (not created).</summary>
    public string CheckpointDir(string id) => Path.Combine(_records.ItemDir(id), "checkpoint");

    /// <summary>Removes the migration's pod checkpoint, if any.</summary>
    public void DiscardCheckpoint(string id)
    {
        var dir = CheckpointDir(id);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    /// <summary>A migration id usable as a directory name: 1-128 of [A-Za-z0-9._-], not "." or "..".</summary>
    public static bool IsValidId(string id) =>
        id.Length is > 0 and <= 128 && id is not "." and not ".." && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
}
