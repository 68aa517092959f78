using System.Text.Json;
using CriRuntime.Errors;
using CriRuntime.Images.Reference;
using CriRuntime.Files;
using CriRuntime.State;

namespace CriRuntime.Images;

/// <summary>The stored images and their names, persisted atomically to &lt;images&gt;/images.json
/// after every change (written last in a pull, after its blobs and snapshots, so a crash never
/// leaves a record pointing at missing content). A name (tag or repo digest) belongs to one
/// image: pulling a tag that moved takes it from the old image.</summary>
public sealed class ImageStore
{
    private readonly string _path;
    private readonly ImageUsage _usage;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ImageRecord> _images = new(StringComparer.Ordinal);

    public ImageStore(string dir, ImageUsage usage)
    {
        _path = Path.Combine(dir, "images.json");
        _usage = usage;
        Directory.CreateDirectory(dir);
        // AtomicFile's temporary files from a write a crash interrupted: the rename never happened.
        foreach (var stale in Directory.EnumerateFiles(dir, ".images.json.*.tmp")) File.Delete(stale);
        if (File.Exists(_path))
        {
            var file = JsonSerializer.Deserialize(File.ReadAllBytes(_path), ImageRecordJson.Default.ImageIndexFile)
                ?? throw new InvalidDataException($"{_path}: empty image index");
            foreach (var image in file.Images) _images[image.Id] = image;
        }
        _usage.Released += OnReleased;
    }

    public IReadOnlyList<ImageRecord> List()
    {
        lock (_lock) return [.. _images.Values.OrderBy(i => i.Pulled)];
    }

    public ImageRecord? Get(string id)
    {
        lock (_lock) return _images.GetValueOrDefault(id);
    }

    /// <summary>An image by id ("sha256:hex" or bare hex), by repo digest, or by (normalised)
    /// tag; null when none matches. An unparsable name matches nothing.</summary>
    public ImageRecord? Find(string image)
    {
        if (string.IsNullOrEmpty(image)) return null;
        lock (_lock) return FindLocked(image);
    }

    private ImageRecord? FindLocked(string image)
    {
        var id = image.Length == 64 && image.All(char.IsAsciiHexDigitLower) ? $"{Digest.Sha256}:{image}" : image;
        if (_images.TryGetValue(id, out var byId)) return byId;
        if (!ImageReference.TryParse(image, out var reference, out _)) return null;
        if (reference.Digest is { } digest)
        {
            var name = reference.DigestName(digest);
            return _images.Values.FirstOrDefault(i => i.RepoDigests.Contains(name));
        }
        var tag = reference.TagName;
        return _images.Values.FirstOrDefault(i => i.RepoTags.Contains(tag));
    }

    /// <summary>Adds a pulled image under <paramref name="image"/>'s names, merging with an
    /// existing record of the same id and taking the names from any other image. Images left
    /// without names go unless in use. Returns the stored record.</summary>
    public ImageRecord Commit(ImageRecord image)
    {
        lock (_lock)
        {
            var names = image.RepoTags.Concat(image.RepoDigests).ToHashSet(StringComparer.Ordinal);
            foreach (var other in _images.Values.Where(i => i.Id != image.Id).ToList())
            {
                if (!other.RepoTags.Concat(other.RepoDigests).Any(names.Contains)) continue;
                var kept = other with
                {
                    RepoTags = [.. other.RepoTags.Where(n => !names.Contains(n))],
                    RepoDigests = [.. other.RepoDigests.Where(n => !names.Contains(n))],
                };
                PutOrDropLocked(kept);
            }
            var stored = _images.TryGetValue(image.Id, out var existing)
                ? existing with
                {
                    RepoTags = [.. existing.RepoTags.Union(image.RepoTags)],
                    RepoDigests = [.. existing.RepoDigests.Union(image.RepoDigests)],
                }
                : image;
            _images[image.Id] = stored;
            SaveLocked();
            return stored;
        }
    }

    /// <summary>Removes what <paramref name="image"/> names: a tag removes that tag (and its
    /// repository's digest names once that repository has no tag left; all of them once the image
    /// has no tag left); an id or a digest reference removes every name. An
    /// image without names is dropped unless a container uses it. Returns the image it matched,
    /// or null when nothing did (removal is idempotent).</summary>
    public ImageRecord? Remove(string image, Func<ImageRecord, bool> isPinned)
    {
        lock (_lock)
        {
            var found = FindLocked(image);
            if (found is null) return null;
            if (isPinned(found))
                throw Fail.FailedPrecondition($"image {image} ({found.Id}) is pinned by the [images] pinned config and cannot be removed");
            var byTag = found.Id != image && !image.StartsWith($"{Digest.Sha256}:", StringComparison.Ordinal)
                && ImageReference.TryParse(image, out var reference, out _) && reference.Digest is null;
            ImageRecord next;
            if (byTag)
            {
                var removed = ImageReference.Parse(image);
                var tags = found.RepoTags.Where(t => t != removed.TagName).ToList();
                // The repository's digest names go with its last tag.
                var repoKept = tags.Any(t => t.StartsWith($"{removed.Name}:", StringComparison.Ordinal));
                var digests = tags.Count == 0 ? [] : found.RepoDigests
                    .Where(d => repoKept || !d.StartsWith($"{removed.Name}@", StringComparison.Ordinal)).ToList();
                next = found with { RepoTags = tags, RepoDigests = digests };
            }
            else next = found with { RepoTags = [], RepoDigests = [] };
            PutOrDropLocked(next);
            SaveLocked();
            return found;
        }
    }

    private void PutOrDropLocked(ImageRecord image)
    {
        if (image.RepoTags.Count == 0 && image.RepoDigests.Count == 0 && !_usage.IsInUse(image.Id))
            _images.Remove(image.Id);
        else
            _images[image.Id] = image;
    }

    /// <summary>Drops nameless images no container uses. For the container store to call once it
    /// has re-marked its containers' images after a restart (usage is not persisted).</summary>
    public void PruneUnused()
    {
        lock (_lock)
        {
            var doomed = _images.Values.Where(i => i.RepoTags.Count == 0 && i.RepoDigests.Count == 0 && !_usage.IsInUse(i.Id)).ToList();
            if (doomed.Count == 0) return;
            foreach (var i in doomed) _images.Remove(i.Id);
            SaveLocked();
        }
    }

    /// <summary>A nameless image kept only for its containers goes when the last one lets go.</summary>
    /// <summary>Raised when an untagged image is dropped because its last container went: its
    /// content may now be unreferenced (<see cref="ImageGarbageCollector"/>).</summary>
    public event Action? Forgotten;

    private void OnReleased(string id)
    {
        lock (_lock)
        {
            if (!_images.TryGetValue(id, out var image) || image.RepoTags.Count > 0 || image.RepoDigests.Count > 0) return;
            _images.Remove(id);
            SaveLocked();
        }
        Forgotten?.Invoke();
    }

    private void SaveLocked()
    {
        var file = new ImageIndexFile(1, [.. _images.Values.OrderBy(i => i.Pulled)]);
        AtomicFile.Write(_path, JsonSerializer.SerializeToUtf8Bytes(file, ImageRecordJson.Default.ImageIndexFile));
    }
}
