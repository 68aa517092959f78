using Google.Protobuf.Collections;

namespace CriRuntime.Cri;

/// <summary>Labels and annotations from records (read-only dictionaries) into protobuf maps.</summary>
internal static class MapFields
{
    public static void Add(this MapField<string, string> map, IReadOnlyDictionary<string, string> entries)
    {
        foreach (var (key, value) in entries) map[key] = value;
    }
}
