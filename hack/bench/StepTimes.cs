using System.Globalization;
using System.Text.RegularExpressions;

namespace CriRuntime.Bench;

/// <summary>Our daemon's Debug lines "CreateContainer ID: step=1.23ms … total=4.56ms" (and
/// StartContainer, RemoveContainer, ExecSync), gathered per call and step.</summary>
public static partial class StepTimes
{
    public static Dictionary<string, Dictionary<string, List<double>>> Parse(string log)
    {
        var result = new Dictionary<string, Dictionary<string, List<double>>>(StringComparer.Ordinal);
        foreach (Match line in Line().Matches(log))
        {
            var steps = result.TryGetValue(line.Groups[1].Value, out var s) ? s : result[line.Groups[1].Value] = new(StringComparer.Ordinal);
            foreach (Match step in Step().Matches(line.Groups[2].Value))
            {
                var name = step.Groups[1].Value.Trim();
                (steps.TryGetValue(name, out var list) ? list : steps[name] = []).Add(double.Parse(step.Groups[2].Value, CultureInfo.InvariantCulture));
            }
        }
        return result;
    }

    /// <summary>The steps of the last "CALL ID: …" line for one call of one object, in order.</summary>
    public static List<(string Step, double Ms)> Of(string log, string call, string id)
    {
        var result = new List<(string, double)>();
        var line = log.Split('\n').LastOrDefault(l => l.Contains($"{call} {id}: ", StringComparison.Ordinal));
        if (line is null) return result;
        foreach (Match step in Step().Matches(line[(line.IndexOf($"{call} {id}: ", StringComparison.Ordinal) + call.Length + id.Length + 3)..]))
            result.Add((step.Groups[1].Value.Trim(), double.Parse(step.Groups[2].Value, CultureInfo.InvariantCulture)));
        return result;
    }

    /// <summary>Every "step=1.23ms" of <paramref name="text"/>, in order.</summary>
    public static List<(string Step, double Ms)> Steps(string text) =>
        [.. Step().Matches(text).Select(m => (m.Groups[1].Value.Trim(), double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)))];

    /// <summary>The time of every successful call of <paramref name="method"/> ("/runtime.v1.RuntimeService/Status ok in 0.3 ms").</summary>
    public static List<double> CallMs(string log, string method) =>
        [.. CallOk().Matches(log).Where(m => m.Groups[1].Value == method).Select(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))];

    /// <summary>The managed heap in KiB after the daemon's last idle trim (a compacting GC) logged
    /// at or before <paramref name="until"/> (its Debug line, Server/IdleTrim.cs); null if none.</summary>
    public static long? ManagedHeapKbAfterTrim(string log, DateTime until)
    {
        long? heap = null;
        foreach (Match m in Trim().Matches(log))
        {
            if (!DateTime.TryParse(m.Groups[1].Value, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var at) || at > until) continue;
            heap = long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }
        return heap;
    }

    [GeneratedRegex(@"^(\S+) dbug: \S*IdleTrim\S* Idle trim: .*; managed heap ([0-9]+) KiB", RegexOptions.Multiline)]
    private static partial Regex Trim();

    [GeneratedRegex(@"/runtime\.v1\.(\w+/\w+) ok in ([0-9.]+) ms")]
    private static partial Regex CallOk();

    [GeneratedRegex(@"\b(CreateContainer|StartContainer|RemoveContainer|ExecSync) [0-9a-f]{64}: (.*)$", RegexOptions.Multiline)]
    private static partial Regex Line();

    [GeneratedRegex(@"([^=]+)=([0-9.]+)ms")]
    private static partial Regex Step();
}
