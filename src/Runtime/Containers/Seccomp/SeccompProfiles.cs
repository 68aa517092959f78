using System.Text.Json;
using System.Text.Json.Nodes;
using CriRuntime.Oci;

namespace CriRuntime.Containers.Seccomp;

/// <summary>Localhost seccomp profiles (the CRI's Localhost type) in the OCI or Docker JSON format.
/// The RuntimeDefault profile is <see cref="DefaultSeccompProfile"/>.</summary>
public static class SeccompProfiles
{
    /// <summary>Reads a profile file. Docker's format is the OCI one plus "archMap" (architectures
    /// with their sub-architectures) and "includes"/"excludes" conditions, which are dropped here
    /// together with the rules they guard, so an unconditional rule is never widened.</summary>
    public static LinuxSeccomp Parse(byte[] json)
    {
        var root = JsonNode.Parse(json)?.AsObject() ?? throw new JsonException("empty seccomp profile");
        if (root["architectures"] is null && root["archMap"] is JsonArray archMap)
        {
            var archs = new JsonArray();
            foreach (var entry in archMap)
            {
                if (entry?["architecture"]?.GetValue<string>() is { } a) archs.Add((JsonNode)JsonValue.Create(a));
                if (entry?["subArchitectures"] is JsonArray subs)
                    foreach (var s in subs) if (s?.GetValue<string>() is { } sub) archs.Add((JsonNode)JsonValue.Create(sub));
            }
            root["architectures"] = archs;
        }
        root.Remove("archMap");
        if (root["syscalls"] is JsonArray syscalls)
        {
            var kept = new JsonArray();
            foreach (var rule in syscalls)
            {
                if (rule is not JsonObject o) continue;
                var conditional = (o["includes"] is JsonObject inc && inc.Count > 0) || (o["excludes"] is JsonObject exc && exc.Count > 0);
                if (conditional) continue;
                o.Remove("includes");
                o.Remove("excludes");
                o.Remove("comment");
                kept.Add(o.DeepClone());
            }
            root["syscalls"] = kept;
        }
        if (root["defaultAction"] is null) throw new JsonException("seccomp profile has no defaultAction");
        return root.Deserialize(OciJsonContext.Default.LinuxSeccomp) ?? throw new JsonException("unreadable seccomp profile");
    }
}
