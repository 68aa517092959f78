using CriRuntime.Errors;
using CriRuntime.Images.Content;
using CriRuntime.Images.Oci;
using CriRuntime.Images.Snapshots;

namespace CriRuntime.Images;

/// <summary>A stored image as the container code needs it: its id, its config (user, env,
/// entrypoint, cmd, working dir, stop signal, volumes, ports, labels) and its unpacked layers.</summary>
/// <param name="LayerDirs">The layers' directories, bottom layer first. overlayfs lists lowerdir
/// top first: <c>lowerdir=string.Join(':', LayerDirs.Reverse())</c>.</param>
public sealed record ResolvedImage(string Id, ImageRecord Record, ImageConfigFile Config, IReadOnlyList<string> LayerDirs);

/// <summary>What CreateContainer uses: an image reference or id to its config and layers.</summary>
public interface IImageResolver
{
    /// <summary>Resolves by id, repo digest or tag; throws NotFound when the image is not stored.</summary>
    ResolvedImage Resolve(string image);

    /// <summary>The stored image's record (names and digests), or null when it is gone.</summary>
    ImageRecord? Find(string image);

    /// <summary>The annotations of the image's manifest and of the indexes it was pulled by
    /// (where a checkpoint image carries its marks); the manifest's win over an index's.</summary>
    IReadOnlyDictionary<string, string> Annotations(ImageRecord image);

    /// <summary>One of a stored image's layer blobs as pulled (still compressed).
    /// <see cref="FileNotFoundException"/> when it is gone.</summary>
    Stream OpenLayer(LayerRecord layer);
}

public sealed class ImageResolver(ImageStore images, ContentStore content, SnapshotStore snapshots) : IImageResolver
{
    public ResolvedImage Resolve(string image)
    {
        var record = images.Find(image) ?? throw Fail.NotFound($"image {image} not found");
        var config = ManifestParser.ParseConfig(content.Read(Digest.Parse(record.Id)), record.Layers.Count);
        var dirs = record.Layers.Select(l => snapshots.FsPath(Digest.Parse(l.ChainId))).ToList();
        foreach (var d in dirs)
            if (!Directory.Exists(d)) throw Fail.FailedPrecondition($"image {image} ({record.Id}): layer snapshot {d} is missing");
        return new ResolvedImage(record.Id, record, config, dirs);
    }

    public ImageRecord? Find(string image) => images.Find(image);

    /// <summary>Annotations by manifest digest (and the index digests above it): content
    /// addressed, so never stale; read once per image, not at every CreateContainer.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, IReadOnlyDictionary<string, string>> _annotations = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, string> Annotations(ImageRecord image)
    {
        var key = string.Join(',', image.IndexDigests.Append(image.ManifestDigest));
        if (_annotations.TryGetValue(key, out var known)) return known;
        if (_annotations.Count >= 4096) _annotations.Clear(); // a bound; images come and go
        return _annotations[key] = ReadAnnotations(image);
    }

    private Dictionary<string, string> ReadAnnotations(ImageRecord image)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var blob in image.IndexDigests.Append(image.ManifestDigest))
        {
            var digest = Digest.Parse(blob);
            if (!content.Has(digest)) continue;
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(content.Read(digest));
                if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object
                    || !doc.RootElement.TryGetProperty("annotations", out var annotations)
                    || annotations.ValueKind != System.Text.Json.JsonValueKind.Object) continue;
                foreach (var a in annotations.EnumerateObject())
                    if (a.Value.ValueKind == System.Text.Json.JsonValueKind.String) result[a.Name] = a.Value.GetString()!;
            }
            catch (System.Text.Json.JsonException)
            {
                // Parsed when it was pulled; a blob that no longer parses has no annotations to give.
            }
        }
        return result;
    }

    public Stream OpenLayer(LayerRecord layer) => content.OpenRead(Digest.Parse(layer.Digest));
}

/// <summary>Bytes and inodes used under the image store (blobs, snapshots, metadata), for
/// ImageFsInfo. Walking a large store is not free, so a result is reused for a few seconds.</summary>
public sealed class ImageFsUsage(string dir, TimeProvider time)
{
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(5);
    private readonly Lock _lock = new();
    private (DateTimeOffset At, ulong Bytes, ulong Inodes)? _last;

    public string Dir => dir;

    public (ulong Bytes, ulong Inodes) Measure()
    {
        lock (_lock)
        {
            var now = time.GetUtcNow();
            if (_last is { } l && now - l.At < CacheFor) return (l.Bytes, l.Inodes);
            ulong bytes = 0, inodes = 1;
            var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = 0 };
            foreach (var entry in new DirectoryInfo(dir).EnumerateFileSystemInfos("*", options))
            {
                inodes++;
                if (entry is FileInfo { LinkTarget: null } f) bytes += (ulong)f.Length;
            }
            _last = (now, bytes, inodes);
            return (bytes, inodes);
        }
    }

    /// <summary>Forget the cached figure (after a pull or removal changed the store).</summary>
    public void Invalidate()
    {
        lock (_lock) _last = null;
    }
}
