using System.Text.Json;
using CriRuntime.Config;

namespace CriRuntime.Network;

/// <summary>Whether the pod network can be set up: NetworkReady in Status.</summary>
public sealed record CniStatus(bool Ready, string Message, string? ConfigFile, string? NetworkName);

/// <summary>Finds the network configuration the way CNI runtimes agree on: the first file in
/// lexical order in the config directory ending in .conflist, .conf or .json that parses as a
/// network configuration, whose plugins can all be found in the plugin directories.</summary>
public sealed class CniConfigProbe(Func<CniSection> current)
{
    public CniConfigProbe(CriRuntimeConfig config) : this(() => config.Cni) { }

    /// <summary>Looks again at every call: the directory's contents, and after a reload the directory itself, may change.</summary>
    public CniStatus Check()
    {
        var _cni = current();
        if (!Directory.Exists(_cni.ConfDir))
            return new(false, $"no CNI network config found: {_cni.ConfDir} does not exist", null, null);
        var problems = new List<string>();
        foreach (var file in Directory.GetFiles(_cni.ConfDir).Order(StringComparer.Ordinal))
        {
            var ext = Path.GetExtension(file);
            if (ext is not (".conflist" or ".conf" or ".json")) continue;
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
                var root = doc.RootElement;
                var name = root.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
                if (string.IsNullOrEmpty(name)) { problems.Add($"{file}: no network name"); continue; }
                var types = new List<string>();
                if (root.TryGetProperty("plugins", out var plugins) && plugins.ValueKind == JsonValueKind.Array)
                {
                    foreach (var p in plugins.EnumerateArray())
                        if (p.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String) types.Add(t.GetString()!);
                }
                else if (root.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String)
                {
                    types.Add(t.GetString()!);
                }
                if (types.Count == 0) { problems.Add($"{file}: no plugins"); continue; }
                var missing = types.Where(t => !_cni.BinDirs.Any(d => File.Exists(Path.Combine(d, t)))).ToList();
                if (missing.Count > 0)
                {
                    problems.Add($"{file}: plugin {string.Join(", ", missing)} not found in {string.Join(", ", _cni.BinDirs)}");
                    continue;
                }
                return new(true, "", file, name);
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
            {
                problems.Add($"{file}: {e.Message}");
            }
        }
        var detail = problems.Count == 0 ? "" : ": " + string.Join("; ", problems);
        return new(false, $"no usable CNI network config in {_cni.ConfDir}{detail}", null, null);
    }
}
