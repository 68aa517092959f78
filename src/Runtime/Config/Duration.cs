using System.Globalization;
using System.Text;

namespace CriRuntime.Config;

/// <summary>Durations in the form Kubernetes operators know from Go: "500ms", "30s", "1m30s", "2h".</summary>
public static class Duration
{
    public static bool TryParse(ReadOnlySpan<char> s, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (s.IsEmpty) return false;
        if (s is "0") return true;
        double total = 0;
        while (!s.IsEmpty)
        {
            var n = 0;
            while (n < s.Length && (char.IsAsciiDigit(s[n]) || s[n] == '.')) n++;
            if (n == 0 || !double.TryParse(s[..n], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)) return false;
            s = s[n..];
            var u = 0;
            while (u < s.Length && char.IsAsciiLetter(s[u])) u++;
            double ms = s[..u] switch
            {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => -1,
            };
            if (ms < 0) return false;
            total += number * ms;
            s = s[u..];
        }
        value = TimeSpan.FromMilliseconds(total);
        return true;
    }

    public static string Format(TimeSpan t)
    {
        if (t == TimeSpan.Zero) return "0s";
        var sb = new StringBuilder();
        if (t.Hours + t.Days * 24 > 0) sb.Append(CultureInfo.InvariantCulture, $"{(int)t.TotalHours}h");
        if (t.Minutes > 0) sb.Append(CultureInfo.InvariantCulture, $"{t.Minutes}m");
        if (t.Seconds > 0) sb.Append(CultureInfo.InvariantCulture, $"{t.Seconds}s");
        if (t.Milliseconds > 0) sb.Append(CultureInfo.InvariantCulture, $"{t.Milliseconds}ms");
        return sb.ToString();
    }
}
