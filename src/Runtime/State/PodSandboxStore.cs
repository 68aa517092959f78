using System.Collections.Concurrent;
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

/// <summary>Every pod this daemon knows, in memory and on disk. Updates persist atomically before
/// they become visible; a restart loads the same set.</summary>
public sealed class PodSandboxStore
{
    private readonly ConcurrentDictionary<string, PodSandboxRecord> _pods = new(StringComparer.Ordinal);
    public string Dir { get; }

    public PodSandboxStore(string root)
    {
        Dir = Path.Combine(root, "pods");
        Directory.CreateDirectory(Dir);
        foreach (var dir in Directory.GetDirectories(Dir))
        {
            var file = Path.Combine(dir, "sandbox.json");
            if (!File.Exists(file)) continue; // half-created: the recovery sweep removes it
            var pod = JsonSerializer.Deserialize(File.ReadAllBytes(file), PodJson.Default.PodSandboxRecord);
            if (pod is not null) _pods[pod.Id] = pod;
        }
    }

    public static string Key(string name, string ns, string uid, uint attempt) => $"{name}\u0001{ns}\u0001{uid}\u0001{attempt}";

    public string PodDir(string id) => Path.Combine(Dir, id);

    public IReadOnlyCollection<PodSandboxRecord> All => [.. _pods.Values];

    public PodSandboxRecord? Find(string id) => _pods.GetValueOrDefault(id);

    public PodSandboxRecord? FindByName(string key) => _pods.Values.FirstOrDefault(p => p.NameKey == key);

    /// <summary>The pod with this id, or a unique pod whose id starts with it (as crictl allows).</summary>
    public PodSandboxRecord Get(string idOrPrefix)
    {
        if (string.IsNullOrEmpty(idOrPrefix)) throw Fail.InvalidArgument("pod_sandbox_id: required");
        if (_pods.TryGetValue(idOrPrefix, out var pod)) return pod;
        var matches = _pods.Values.Where(p => p.Id.StartsWith(idOrPrefix, StringComparison.Ordinal)).Take(2).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw Fail.NotFound($"pod sandbox {idOrPrefix} not found"),
            _ => throw Fail.InvalidArgument($"pod_sandbox_id: {idOrPrefix} matches more than one pod sandbox"),
        };
    }

    public PodSandboxRecord? TryGet(string idOrPrefix)
    {
        try { return Get(idOrPrefix); }
        catch (CriException e) when (e.Kind == ErrorKind.NotFound) { return null; }
    }

    public void Save(PodSandboxRecord pod)
    {
        AtomicFile.Write(Path.Combine(pod.Dir, "sandbox.json"), JsonSerializer.SerializeToUtf8Bytes(pod, PodJson.Default.PodSandboxRecord));
        _pods[pod.Id] = pod;
    }

    /// <summary>Forgets a pod: its record goes first, so a crash midway leaves a directory without
    /// a record, which the recovery sweep removes, never a record without its files.</summary>
    public void Delete(string id)
    {
        _pods.TryRemove(id, out _);
        var dir = PodDir(id);
        File.Delete(Path.Combine(dir, "sandbox.json"));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    /// <summary>RunPodSandbox calls in progress by name key: a kubelet retry of a create that is
    /// still running awaits the same task and gets the same pod.</summary>
    public ConcurrentDictionary<string, Lazy<Task<string>>> Creating { get; } = new(StringComparer.Ordinal);

    private readonly ConcurrentDictionary<string, SemaphoreSlim> _locks = new(StringComparer.Ordinal);

    /// <summary>Serialises lifecycle changes of one pod (stop, remove, container create).</summary>
    public async Task<IDisposable> LockAsync(string id, CancellationToken ct)
    {
        var sem = _locks.GetOrAdd(id, _ => new SemaphoreSlim(1, 1));
        await sem.WaitAsync(ct).ConfigureAwait(false);
        return new Releaser(sem);
    }

    private sealed class Releaser(SemaphoreSlim sem) : IDisposable
    {
        private int _done;
        public void Dispose() { if (Interlocked.Exchange(ref _done, 1) == 0) sem.Release(); }
    }
}
