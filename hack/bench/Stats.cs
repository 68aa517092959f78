namespace CriRuntime.Bench;

/// <summary>Pure helpers of the benchmark (unit-tested): percentiles and /proc parsing.</summary>
public static class Stats
{
    /// <summary>The p-th percentile (0..100) by linear interpolation between closest ranks
    /// (numpy's default); NaN for no samples.</summary>
    public static double Percentile(IReadOnlyList<double> samples, double p)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(p, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(p, 100);
        if (samples.Count == 0) return double.NaN;
        var sorted = samples.Order().ToArray();
        var rank = p / 100 * (sorted.Length - 1);
        var lo = (int)Math.Floor(rank);
        var hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    /// <summary>A process's resident memory by kind of mapping, in KiB (<see cref="RssByMapping"/>).</summary>
    public sealed record RssParts(long Code, long ReadOnly, long Data, long TypeData, long Anonymous, long MallocHeap, long Libraries, long Other)
    {
        public long Total => Code + ReadOnly + Data + TypeData + Anonymous + MallocHeap + Libraries + Other;
    }

    /// <summary>Splits /proc/PID/smaps by mapping: the executable's code (r-x), read-only data
    /// (r--) and file-backed data (rw-); the anonymous mapping that follows the executable's last
    /// one (its .bss: for a NativeAOT binary also `.hydrated`, the type data the runtime unpacks at
    /// start); every other anonymous mapping (GC heap, thread stacks, runtime data); the malloc
    /// heap ([heap]); other files (shared libraries); the rest ([stack], [vdso], ...).</summary>
    public static RssParts RssByMapping(string smaps, string executable)
    {
        long code = 0, ro = 0, data = 0, type = 0, anon = 0, heap = 0, libs = 0, other = 0;
        var kind = "";
        var previous = "";
        foreach (var line in smaps.AsSpan().EnumerateLines())
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.IndexOf('-') is > 0 and var dash && dash < 17 && line[..dash].ContainsOnlyHex())
            {
                // "start-end perms offset dev inode   path"
                var fields = line.ToString().Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                var perms = fields[1];
                var path = fields.Length > 5 ? fields[5].Trim() : "";
                kind = path == executable
                    ? perms.StartsWith("r-x", StringComparison.Ordinal) ? "code" : perms.StartsWith("rw", StringComparison.Ordinal) ? "data" : "ro"
                    : path.Length == 0 ? (previous == "data" ? "type" : "anon")
                    : path == "[heap]" ? "heap"
                    : path.StartsWith('/') ? "libs" : "other";
                previous = kind;
            }
            else if (line.StartsWith("Rss:"))
            {
                var kb = KbValue(line);
                switch (kind)
                {
                    case "code": code += kb; break;
                    case "ro": ro += kb; break;
                    case "data": data += kb; break;
                    case "type": type += kb; break;
                    case "anon": anon += kb; break;
                    case "heap": heap += kb; break;
                    case "libs": libs += kb; break;
                    default: other += kb; break;
                }
            }
        }
        return new RssParts(code, ro, data, type, anon, heap, libs, other);
    }

    private static bool ContainsOnlyHex(this ReadOnlySpan<char> s) => !s.IsEmpty && s.IndexOfAnyExcept("0123456789abcdef") < 0;

    /// <summary>Rss and Pss in KiB from the text of /proc/PID/smaps_rollup.</summary>
    public static (long RssKb, long PssKb) ParseSmapsRollup(string text)
    {
        long rss = -1, pss = -1;
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            if (line.StartsWith("Rss:")) rss = KbValue(line);
            else if (line.StartsWith("Pss:")) pss = KbValue(line);
        }
        if (rss < 0 || pss < 0) throw new FormatException("smaps_rollup has no Rss:/Pss: line");
        return (rss, pss);
    }

    /// <summary>A "Key: N kB" value of /proc/meminfo by key, in KiB.</summary>
    public static long MeminfoKb(string text, string key)
    {
        foreach (var line in text.AsSpan().EnumerateLines())
            if (line.StartsWith(key) && line.Length > key.Length && line[key.Length] == ':') return KbValue(line);
        throw new FormatException($"/proc/meminfo has no {key}");
    }

    private static long KbValue(ReadOnlySpan<char> line)
    {
        var rest = line[(line.IndexOf(':') + 1)..].Trim();
        var end = rest.IndexOf(' ');
        return long.Parse(end < 0 ? rest : rest[..end], System.Globalization.CultureInfo.InvariantCulture);
    }
}
