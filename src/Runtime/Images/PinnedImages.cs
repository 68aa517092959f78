using CriRuntime.Config;
using CriRuntime.Images.Reference;

namespace CriRuntime.Images;

/// <summary>The [images] pinned config, normalised: an image is pinned when one of its tags,
/// repo digests or its id is listed. Pinned images are reported pinned=true to the kubelet
/// (whose image GC then skips them) and RemoveImage refuses them.</summary>
public sealed class PinnedImages
{
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public PinnedImages(ImagesSection config)
    {
        foreach (var p in config.Pinned)
        {
            if (p.StartsWith($"{Digest.Sha256}:", StringComparison.Ordinal)) { _names.Add(p); continue; }
            if (!ImageReference.TryParse(p, out var r, out var error))
                throw new ConfigException($"[images] pinned: {error}");
            _names.Add(r.Digest is { } d ? r.DigestName(d) : r.TagName!);
        }
    }

    public bool IsPinned(ImageRecord image) =>
        _names.Contains(image.Id) || image.RepoTags.Any(_names.Contains) || image.RepoDigests.Any(_names.Contains);
}
