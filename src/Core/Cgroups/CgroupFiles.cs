namespace CriRuntime.Cgroups;

/// <summary>Parsers for the cgroup file formats (single value, flat keyed "key value" lines) and
/// path handling shared by the managers.</summary>
internal static class CgroupFiles
{
    /// <summary>A single number; "max" (v2) reads as ulong.MaxValue; missing or empty reads as 0.</summary>
    public static ulong ParseValue(string? text)
    {
        var s = text.AsSpan().Trim();
        if (s.IsEmpty) return 0;
        if (s.SequenceEqual("max")) return ulong.MaxValue;
        return ulong.TryParse(s, out var v) ? v : 0;
    }

    /// <summary>Flat keyed files (memory.stat, cpu.stat, memory.events, cgroup.events): "key value"
    /// per line. Unparsable values are left out.</summary>
    public static Dictionary<string, ulong> ParseFlatKeyed(string? text)
    {
        var result = new Dictionary<string, ulong>(StringComparer.Ordinal);
        if (text is null) return result;
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.Trim();
            var space = line.IndexOf(' ');
            if (space <= 0) continue;
            if (ulong.TryParse(line[(space + 1)..].Trim(), out var v)) result[line[..space].ToString()] = v;
        }
        return result;
    }

    /// <summary>A PSI file (cpu.pressure, memory.pressure, io.pressure):
    /// "some avg10=0.12 avg60=0.05 avg300=0.00 total=123456" and a "full" line alike. Null when the
    /// file is missing (no PSI: CONFIG_PSI off, psi=0, or a v1-only cgroup) or has no such line.</summary>
    public static Pressure? ParsePressure(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        PsiLine? some = null, full = null;
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.Trim();
            var space = line.IndexOf(' ');
            if (space <= 0) continue;
            var kind = line[..space];
            double avg10 = 0, avg60 = 0, avg300 = 0;
            ulong total = 0;
            foreach (var range in line[(space + 1)..].Split(' '))
            {
                var field = line[(space + 1)..][range];
                var eq = field.IndexOf('=');
                if (eq <= 0) continue;
                var key = field[..eq];
                var value = field[(eq + 1)..];
                var inv = System.Globalization.CultureInfo.InvariantCulture;
                if (key.SequenceEqual("avg10")) double.TryParse(value, inv, out avg10);
                else if (key.SequenceEqual("avg60")) double.TryParse(value, inv, out avg60);
                else if (key.SequenceEqual("avg300")) double.TryParse(value, inv, out avg300);
                else if (key.SequenceEqual("total")) ulong.TryParse(value, inv, out total);
            }
            var psi = new PsiLine(total, avg10, avg60, avg300);
            if (kind.SequenceEqual("some")) some = psi;
            else if (kind.SequenceEqual("full")) full = psi;
        }
        return some is null && full is null ? null : new Pressure(some, full);
    }

    public static ulong Get(this Dictionary<string, ulong> map, string key) => map.TryGetValue(key, out var v) ? v : 0;

    /// <summary>The pids listed in a cgroup.procs file.</summary>
    public static IEnumerable<int> ParsePids(string? text)
    {
        if (text is null) yield break;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (int.TryParse(line, out var pid)) yield return pid;
        }
    }

    /// <summary>"kubepods/pod1/abc" from "/kubepods//pod1/abc/": relative, no empty or dot
    /// components, never the hierarchy root itself (which the runtime must not manage).</summary>
    public static string NormalizePath(string path)
    {
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new ArgumentException($"cgroup path: must name a cgroup below the hierarchy root (got \"{path}\")", nameof(path));
        if (parts.Any(p => p is "." or "..")) throw new ArgumentException($"cgroup path: must not contain . or .. (got \"{path}\")", nameof(path));
        return string.Join('/', parts);
    }

    public static string Format(long value) => value == -1 ? "max" : value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
