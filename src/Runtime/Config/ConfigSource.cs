namespace CriRuntime.Config;

/// <summary>What a reload did: the keys whose new values took effect, the keys that cannot change
/// while the daemon runs (kept at their old values), or why the new config was refused.</summary>
public sealed record ReloadResult(IReadOnlyList<string> Applied, IReadOnlyList<string> Kept, string? Error);

/// <summary>The one holder of the configuration in force. Consumers of what may change at run
/// time (registry mirrors and insecure hosts, the CNI config directory, the log level, the
/// streaming token lifetime, checkpoint settings, blockio classes, the trace sampling ratio) read <see cref="Current"/> per request; the
/// rest was used at start and keeps its start value. <see cref="Reload"/> (SIGHUP) reads the
/// files again with the same flags.</summary>
public sealed class ConfigSource(CriRuntimeConfig initial, Func<CriRuntimeConfig>? load = null)
{
    private volatile CriRuntimeConfig _current = initial;

    public CriRuntimeConfig Current => _current;

    /// <summary>Raised after a reload changed the config in force (e.g. the log level filter).</summary>
    public event Action<CriRuntimeConfig>? Changed;

    /// <summary>Loads the files again. An invalid config is refused with the loader's file/key
    /// message and the old one stays; keys that cannot change at run time keep their values.</summary>
    public ReloadResult Reload()
    {
        if (load is null) return new([], [], "no config files to reload from");
        CriRuntimeConfig loaded;
        try { loaded = load(); }
        catch (ConfigException e) { return new([], [], e.Message); }
        var old = _current;
        var next = Merge(old, loaded);
        var before = Keys(old);
        var asked = Keys(loaded);
        var after = Keys(next);
        var applied = after.Where(kv => !before.TryGetValue(kv.Key, out var v) || v != kv.Value).Select(kv => kv.Key)
            .Concat(before.Keys.Where(k => !after.ContainsKey(k))).Order(StringComparer.Ordinal).ToList();
        var kept = asked.Where(kv => !after.TryGetValue(kv.Key, out var v) || v != kv.Value).Select(kv => kv.Key)
            .Concat(after.Keys.Where(k => !asked.ContainsKey(k))).Order(StringComparer.Ordinal).ToList();
        _current = next;
        if (applied.Count > 0) Changed?.Invoke(next);
        return new(applied, kept, null);
    }

    /// <summary>The new config's run-time changeable parts on the old config's fixed ones.</summary>
    internal static CriRuntimeConfig Merge(CriRuntimeConfig old, CriRuntimeConfig loaded) => old with
    {
        LogLevel = loaded.LogLevel,
        Cni = old.Cni with { ConfDir = loaded.Cni.ConfDir },
        Registry = loaded.Registry,
        Streaming = old.Streaming with { TokenTtl = loaded.Streaming.TokenTtl },
        Checkpoint = loaded.Checkpoint,
        Storage = old.Storage with { BlockioConfigFile = loaded.Storage.BlockioConfigFile, Blockio = loaded.Storage.Blockio },
        // The exporter is built at start; the sampler reads the ratio per trace.
        Telemetry = old.Telemetry with { SamplingRatio = loaded.Telemetry.SamplingRatio },
    };

    /// <summary>Every key of a config as "section.key" → its TOML value, from the printed form,
    /// so a key added to the config is compared without being listed here.</summary>
    internal static Dictionary<string, string> Keys(CriRuntimeConfig c)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var section = "";
        foreach (var raw in ConfigWriter.ToToml(c).Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            if (line[0] == '[') { section = line[1..^1] + "."; continue; }
            var eq = line.IndexOf(" = ", StringComparison.Ordinal);
            if (eq > 0) result[section + line[..eq]] = line[(eq + 3)..];
        }
        // The class file's contents are not in the TOML: a changed file under the same name is a
        // changed key too.
        if (c.Storage.Blockio.Source.Length > 0) result["storage.blockio_classes"] = c.Storage.Blockio.Fingerprint();
        return result;
    }
}
