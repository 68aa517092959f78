using System.Text.Json.Serialization;

namespace CriRuntime.Images;

/// <summary>One layer of a stored image: the blob as pulled, what it unpacks to, and the
/// snapshot (by chain id) holding it.</summary>
public sealed record LayerRecord(string Digest, string MediaType, long Size, string DiffId, string ChainId);

/// <summary>A stored image, as persisted in images.json. Id is the config digest (what the CRI
/// calls the image id). RepoTags are normalised "domain/path:tag"; RepoDigests are
/// "domain/path@digest" of the manifest or index the image was pulled by.</summary>
public sealed record ImageRecord(
    string Id,
    IReadOnlyList<string> RepoTags,
    IReadOnlyList<string> RepoDigests,
    string ManifestDigest,
    IReadOnlyList<string> IndexDigests,
    IReadOnlyList<LayerRecord> Layers,
    long Size,
    DateTimeOffset Pulled)
{
    /// <summary>Every blob this image keeps alive: indexes, manifest, config, layers.</summary>
    public IEnumerable<string> Blobs => IndexDigests.Append(ManifestDigest).Append(Id).Concat(Layers.Select(l => l.Digest));

    public IEnumerable<string> Snapshots => Layers.Select(l => l.ChainId);
}

public sealed record ImageIndexFile(int Version, IReadOnlyList<ImageRecord> Images);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(ImageIndexFile))]
internal sealed partial class ImageRecordJson : JsonSerializerContext;
