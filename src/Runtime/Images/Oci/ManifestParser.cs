using System.Text.Json;

namespace CriRuntime.Images.Oci;

/// <summary>A manifest document: either an index (OCI index or Docker manifest list) that points
/// at per-platform manifests, or an image manifest (OCI or Docker schema2).</summary>
public abstract record ParsedManifest(string MediaType);
public sealed record ParsedIndex(string MediaType, IReadOnlyList<Descriptor> Manifests) : ParsedManifest(MediaType);
public sealed record ParsedImageManifest(string MediaType, Descriptor Config, IReadOnlyList<Descriptor> Layers) : ParsedManifest(MediaType);

/// <summary>Pure parsing of manifests, indexes and configs, and platform selection. Every failure
/// is a <see cref="FormatException"/> whose message says what is wrong.</summary>
public static class ManifestParser
{
    /// <summary>The platform this node runs images for.</summary>
    public static readonly Platform Host = new("amd64", "linux");

    /// <summary>Parses a manifest. The registry's Content-Type wins when it is a known type; the
    /// document's own mediaType and then its shape decide otherwise (mediaType is optional in OCI).</summary>
    public static ParsedManifest Parse(ReadOnlySpan<byte> body, string? contentType)
    {
        ManifestProbe probe;
        try { probe = JsonSerializer.Deserialize(body, OciJson.Default.ManifestProbe) ?? throw new FormatException("manifest is null"); }
        catch (JsonException e) { throw new FormatException($"manifest is not valid JSON: {e.Message}", e); }
        if (probe.SchemaVersion != 2)
            throw new FormatException($"unsupported manifest schemaVersion {probe.SchemaVersion} (Docker schema1 is not supported)");

        var type = contentType?.Split(';')[0].Trim();
        if (!MediaTypes.IsIndex(type) && !MediaTypes.IsManifest(type)) type = probe.MediaType;
        if (!MediaTypes.IsIndex(type) && !MediaTypes.IsManifest(type))
        {
            type = probe.Manifests is { ValueKind: JsonValueKind.Array } ? MediaTypes.OciIndex
                : probe.Config is { ValueKind: JsonValueKind.Object } ? MediaTypes.OciManifest
                : throw new FormatException($"unsupported manifest media type \"{probe.MediaType ?? contentType}\"");
        }
        if (probe.MediaType is { } declared && declared != type)
            throw new FormatException($"manifest declares mediaType {declared} but was served as {type}");

        if (MediaTypes.IsIndex(type))
        {
            var index = JsonSerializer.Deserialize(body, OciJson.Default.OciIndex)!;
            var manifests = index.Manifests ?? throw new FormatException("index has no manifests");
            foreach (var m in manifests) CheckDescriptor(m, "index entry");
            return new ParsedIndex(type!, manifests);
        }
        var manifest = JsonSerializer.Deserialize(body, OciJson.Default.OciManifest)!;
        var config = manifest.Config ?? throw new FormatException("manifest has no config");
        CheckDescriptor(config, "config");
        var layers = manifest.Layers ?? [];
        foreach (var l in layers)
        {
            CheckDescriptor(l, "layer");
            if (!MediaTypes.IsLayer(l.MediaType ?? ""))
                throw new FormatException($"layer {l.Digest} has unsupported media type \"{l.MediaType}\"");
        }
        return new ParsedImageManifest(type!, config, layers);
    }

    private static void CheckDescriptor(Descriptor d, string what)
    {
        if (!Digest.TryParse(d.Digest, out var digest) || digest.Algorithm != Digest.Sha256)
            throw new FormatException($"{what} has an invalid or unsupported digest \"{d.Digest}\"");
        if (d.Size < 0) throw new FormatException($"{what} {d.Digest} has a negative size");
    }

    /// <summary>The index entry for <paramref name="want"/>: os and architecture must match; a
    /// variant is compared only when both sides name one. Entries without a platform (attestations,
    /// artifacts) never match. Null when there is none.</summary>
    public static Descriptor? SelectPlatform(ParsedIndex index, Platform want)
    {
        Descriptor? loose = null;
        foreach (var m in index.Manifests)
        {
            if (m.Platform is not { } p) continue;
            if (m.MediaType is { } mt && !MediaTypes.IsManifest(mt)) continue;
            if (p.Os != want.Os || p.Architecture != want.Architecture) continue;
            if (p.Variant == want.Variant) return m;
            if (p.Variant is null || want.Variant is null) loose ??= m;
        }
        return loose;
    }

    /// <summary>Parses an image config and checks it describes <paramref name="layerCount"/> layers.</summary>
    public static ImageConfigFile ParseConfig(ReadOnlySpan<byte> body, int layerCount)
    {
        ImageConfigFile config;
        try { config = JsonSerializer.Deserialize(body, OciJson.Default.ImageConfigFile) ?? throw new FormatException("image config is null"); }
        catch (JsonException e) { throw new FormatException($"image config is not valid JSON: {e.Message}", e); }
        var diffIds = config.RootFs?.DiffIds ?? [];
        if (diffIds.Count != layerCount)
            throw new FormatException($"image config lists {diffIds.Count} diff_ids but the manifest has {layerCount} layers");
        foreach (var id in diffIds)
            if (!Digest.TryParse(id, out var d) || d.Algorithm != Digest.Sha256)
                throw new FormatException($"image config has an invalid diff_id \"{id}\"");
        return config;
    }

    /// <summary>Chain ids (image-spec config.md): the first is the first diff_id; each next is
    /// sha256 of "parentChainId diffId". A chain id names a layer on top of all the ones below it,
    /// so an unpacked layer is shared by every image with the same stack beneath it.</summary>
    public static IReadOnlyList<Digest> ChainIds(IReadOnlyList<string> diffIds)
    {
        var result = new List<Digest>(diffIds.Count);
        foreach (var id in diffIds)
        {
            var diff = Digest.Parse(id);
            result.Add(result.Count == 0 ? diff : Digest.Of(System.Text.Encoding.ASCII.GetBytes($"{result[^1]} {diff}")));
        }
        return result;
    }
}
