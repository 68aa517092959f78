using System.Text.Json;
using System.Text.Json.Serialization;

namespace CriRuntime.Oci;

/// <summary>Source-generated (reflection-free, AOT-safe) JSON for config.json. camelCase is the
/// spec's convention; explicit [JsonPropertyName]s cover its exceptions. Null members are omitted
/// on write, as runc and containerd do, so a generated config.json stays readable.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(Spec))]
[JsonSerializable(typeof(Process))]
public sealed partial class OciJsonContext : JsonSerializerContext;

public static class SpecFile
{
    public const string ConfigName = "config.json";

    /// <summary>Through <see cref="SpecReader"/>; what it does not take goes to System.Text.Json,
    /// which accepts it or says what is wrong.</summary>
    public static Spec Parse(ReadOnlySpan<byte> json) =>
        SpecReader.TryRead(json)
        ?? JsonSerializer.Deserialize(json, OciJsonContext.Default.Spec)
        ?? throw new InvalidDataException("config.json: the document is null");

    /// <summary>Reads &lt;bundle&gt;/config.json; errors name the file. Through
    /// <see cref="SpecReader"/> (no metadata to build), else a System.Text.Json context of its own,
    /// dropped afterwards: the metadata a context caches for the spec's many types would otherwise
    /// stay live in the long-running shim, which reads the spec once.</summary>
    public static Spec Load(string bundle)
    {
        var path = Path.Combine(bundle, ConfigName);
        try
        {
            var json = File.ReadAllBytes(path);
            return SpecReader.TryRead(json)
                ?? JsonSerializer.Deserialize(json, Transient().Spec)
                ?? throw new InvalidDataException("config.json: the document is null");
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
    }

    public static byte[] Serialize(Spec spec) => JsonSerializer.SerializeToUtf8Bytes(spec, OciJsonContext.Default.Spec);

    /// <summary>Replaces &lt;bundle&gt;/config.json atomically (<see cref="Files.AtomicFile"/>), as
    /// CreateContainer writes it: not fsynced (after a restart the daemon's record, which is, says
    /// what the container was given). A context of its own, as <see cref="Load"/>.</summary>
    public static void Save(string bundle, Spec spec) =>
        Files.AtomicFile.Write(Path.Combine(bundle, ConfigName), JsonSerializer.SerializeToUtf8Bytes(spec, Transient().Spec), durable: false);

    private static OciJsonContext Transient() =>
        new(new JsonSerializerOptions(OciJsonContext.Default.Options) { TypeInfoResolver = null });
}
