using System.Text.Json;
using System.Text.Json.Serialization;
using CriRuntime.Files;

namespace CriRuntime.State;

/// <summary>What the kubelet told us through UpdateRuntimeConfig, kept across daemon restarts in
/// &lt;root&gt;/runtime-config.json (written atomically).</summary>
public sealed class RuntimeConfigStore
{
    private readonly string _path;
    private readonly Lock _lock = new();
    private PersistedRuntimeConfig _current;

    public RuntimeConfigStore(string root)
    {
        _path = Path.Combine(root, "runtime-config.json");
        _current = File.Exists(_path)
            ? JsonSerializer.Deserialize(File.ReadAllBytes(_path), RuntimeConfigJson.Default.PersistedRuntimeConfig) ?? new("")
            : new("");
    }

    public string PodCidr { get { lock (_lock) return _current.PodCidr; } }

    public void SetPodCidr(string cidr)
    {
        lock (_lock)
        {
            if (_current.PodCidr == cidr) return;
            var next = _current with { PodCidr = cidr };
            AtomicFile.Write(_path, JsonSerializer.SerializeToUtf8Bytes(next, RuntimeConfigJson.Default.PersistedRuntimeConfig));
            _current = next;
        }
    }
}

public sealed record PersistedRuntimeConfig(string PodCidr);

[JsonSerializable(typeof(PersistedRuntimeConfig))]
internal sealed partial class RuntimeConfigJson : JsonSerializerContext;
