using CriRuntime.Images.Content;
using CriRuntime.Images.Snapshots;

namespace CriRuntime.Images;

/// <summary>Content a pull is bringing in, protected from garbage collection until the pull
/// commits its image (or fails). Taken before the pull checks whether a blob or snapshot
/// exists, so collection cannot delete something a pull has just decided to reuse.</summary>
public sealed class ImageLease : IDisposable
{
    private readonly ImageGarbageCollector _owner;
    internal readonly List<string> Keys = [];
    internal ImageLease(ImageGarbageCollector owner) => _owner = owner;
    public void AddBlob(Digest digest) => _owner.Hold(this, $"blob:{digest}");
    public void AddSnapshot(Digest chainId) => _owner.Hold(this, $"snapshot:{chainId}");
    public void Dispose() => _owner.Drop(this);
}

/// <summary>Deletes blobs and snapshots no stored image refers to and no pull holds. Runs at
/// start (after an unclean stop the ingest and temp dirs are emptied first) and after each
/// removal. Pinned images always have a record, so their content is never collected.</summary>
public sealed partial class ImageGarbageCollector
{
    private readonly ImageStore _images;
    private readonly ContentStore _content;
    private readonly SnapshotStore _snapshots;
    private readonly ILogger<ImageGarbageCollector> _log;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, int> _held = new(StringComparer.Ordinal);

    /// <summary>Collects whenever the store drops an untagged image its last container released
    /// (the release of an image that keeps its tags leaves nothing to collect).</summary>
    public ImageGarbageCollector(ImageStore images, ContentStore content, SnapshotStore snapshots, ILogger<ImageGarbageCollector> log)
    {
        _images = images;
        _content = content;
        _snapshots = snapshots;
        _log = log;
        images.Forgotten += () => Collect();
    }

    public ImageLease Lease() => new(this);

    internal void Hold(ImageLease lease, string key)
    {
        lock (_lock)
        {
            lease.Keys.Add(key);
            _held[key] = _held.GetValueOrDefault(key) + 1;
        }
    }

    internal void Drop(ImageLease lease)
    {
        lock (_lock)
        {
            foreach (var key in lease.Keys)
                if (--_held[key] == 0) _held.Remove(key);
            lease.Keys.Clear();
        }
    }

    /// <summary>Empties ingest/ and snapshot temp dirs, then collects. Only before serving.</summary>
    public void Recover()
    {
        _content.CleanIngest();
        _snapshots.CleanTemp();
        Collect();
    }

    /// <summary>Deletes unreferenced content; returns how many blobs and snapshots went.</summary>
    public (int Blobs, int Snapshots) Collect()
    {
        int blobs = 0, snaps = 0;
        var doomed = new List<string>();
        lock (_lock)
        {
            var records = _images.List();
            var liveBlobs = records.SelectMany(r => r.Blobs).ToHashSet(StringComparer.Ordinal);
            var liveSnapshots = records.SelectMany(r => r.Snapshots).ToHashSet(StringComparer.Ordinal);
            foreach (var blob in _content.List().ToList())
            {
                var name = blob.ToString();
                if (liveBlobs.Contains(name) || _held.ContainsKey($"blob:{name}")) continue;
                _content.Delete(blob);
                blobs++;
            }
            foreach (var snapshot in _snapshots.List().ToList())
            {
                var name = snapshot.ToString();
                if (liveSnapshots.Contains(name) || _held.ContainsKey($"snapshot:{name}")) continue;
                if (_snapshots.Detach(snapshot) is { } path) doomed.Add(path);
                snaps++;
            }
        }
        foreach (var path in doomed) SnapshotStore.DeleteTree(path);
        if (blobs + snaps > 0) LogCollected(_log, blobs, snaps);
        return (blobs, snaps);
    }

    [LoggerMessage(EventId = 320, Level = LogLevel.Information, Message = "image garbage collection removed {Blobs} blobs and {Snapshots} snapshots")]
    private static partial void LogCollected(ILogger log, int blobs, int snapshots);
}
