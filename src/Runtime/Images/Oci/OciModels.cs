using System.Text.Json;
using System.Text.Json.Serialization;

namespace CriRuntime.Images.Oci;

/// <summary>The media types the puller understands (OCI image-spec and Docker schema2).</summary>
public static class MediaTypes
{
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar";
    public const string OciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string OciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    public const string OciLayerNondistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    public const string OciLayerNondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    public const string DockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// <summary>Every manifest type we accept, for the Accept header: a registry answers 404 for
    /// an OCI manifest when the client does not list its type (distribution 2.8 does).</summary>
    public static readonly string[] Manifests = [OciIndex, OciManifest, DockerManifestList, DockerManifest];

    public static bool IsIndex(string? mt) => mt is OciIndex or DockerManifestList;
    public static bool IsManifest(string? mt) => mt is OciManifest or DockerManifest;

    public static bool IsLayer(string mt) => mt is OciLayer or OciLayerGzip or OciLayerZstd
        or OciLayerNondistributable or OciLayerNondistributableGzip or DockerLayerGzip or DockerForeignLayerGzip
        // Docker's uncompressed layer type, rarely seen.
        or "application/vnd.docker.image.rootfs.diff.tar";
}

public sealed record Platform(
    [property: JsonPropertyName("architecture")] string? Architecture,
    [property: JsonPropertyName("os")] string? Os,
    [property: JsonPropertyName("variant")] string? Variant = null);

public sealed record Descriptor(
    [property: JsonPropertyName("mediaType")] string? MediaType,
    [property: JsonPropertyName("digest")] string Digest,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("platform")] Platform? Platform = null,
    [property: JsonPropertyName("urls")] IReadOnlyList<string>? Urls = null,
    [property: JsonPropertyName("annotations")] IReadOnlyDictionary<string, string>? Annotations = null);

public sealed record OciIndex(
    [property: JsonPropertyName("schemaVersion")] int SchemaVersion,
    [property: JsonPropertyName("mediaType")] string? MediaType,
    [property: JsonPropertyName("manifests")] IReadOnlyList<Descriptor>? Manifests);

public sealed record OciManifest(
    [property: JsonPropertyName("schemaVersion")] int SchemaVersion,
    [property: JsonPropertyName("mediaType")] string? MediaType,
    [property: JsonPropertyName("config")] Descriptor? Config,
    [property: JsonPropertyName("layers")] IReadOnlyList<Descriptor>? Layers);

/// <summary>Only the fields that decide what a manifest is: mediaType, and which of
/// manifests/config/layers are present when mediaType is absent (it is optional in OCI).</summary>
public sealed record ManifestProbe(
    [property: JsonPropertyName("schemaVersion")] int SchemaVersion,
    [property: JsonPropertyName("mediaType")] string? MediaType,
    [property: JsonPropertyName("manifests")] JsonElement? Manifests,
    [property: JsonPropertyName("config")] JsonElement? Config,
    [property: JsonPropertyName("layers")] JsonElement? Layers);

/// <summary>The image configuration (OCI config.md; Docker's is a superset with the same names).</summary>
public sealed record ImageConfigFile(
    [property: JsonPropertyName("created")] string? Created,
    [property: JsonPropertyName("author")] string? Author,
    [property: JsonPropertyName("architecture")] string? Architecture,
    [property: JsonPropertyName("os")] string? Os,
    [property: JsonPropertyName("variant")] string? Variant,
    [property: JsonPropertyName("config")] ContainerDefaults? Config,
    [property: JsonPropertyName("rootfs")] RootFs? RootFs);

/// <summary>What a container of this image runs by default. Volumes and ExposedPorts are JSON
/// objects whose keys are the values (the values are always {}).</summary>
public sealed record ContainerDefaults(
    [property: JsonPropertyName("User")] string? User,
    [property: JsonPropertyName("Env")] IReadOnlyList<string>? Env,
    [property: JsonPropertyName("Entrypoint")] IReadOnlyList<string>? Entrypoint,
    [property: JsonPropertyName("Cmd")] IReadOnlyList<string>? Cmd,
    [property: JsonPropertyName("WorkingDir")] string? WorkingDir,
    [property: JsonPropertyName("StopSignal")] string? StopSignal,
    [property: JsonPropertyName("Volumes")] IReadOnlyDictionary<string, JsonElement>? Volumes,
    [property: JsonPropertyName("ExposedPorts")] IReadOnlyDictionary<string, JsonElement>? ExposedPorts,
    [property: JsonPropertyName("Labels")] IReadOnlyDictionary<string, string>? Labels);

public sealed record RootFs(
    [property: JsonPropertyName("type")] string? Type,
    [property: JsonPropertyName("diff_ids")] IReadOnlyList<string>? DiffIds);

/// <summary>A token endpoint's answer (docker token auth): token or access_token, lifetime in
/// seconds (default 60), and when it was issued.</summary>
public sealed record TokenResponse(
    [property: JsonPropertyName("token")] string? Token,
    [property: JsonPropertyName("access_token")] string? AccessToken,
    [property: JsonPropertyName("expires_in")] int? ExpiresIn,
    [property: JsonPropertyName("issued_at")] DateTimeOffset? IssuedAt);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(OciIndex))]
[JsonSerializable(typeof(OciManifest))]
[JsonSerializable(typeof(ManifestProbe))]
[JsonSerializable(typeof(ImageConfigFile))]
[JsonSerializable(typeof(TokenResponse))]
internal sealed partial class OciJson : JsonSerializerContext;
