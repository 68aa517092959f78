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
