using System.Diagnostics;
using System.Text;

namespace CriRuntime.Containers;

/// <summary>Where the time of one multi-step operation went: <see cref="Mark"/> after each step,
/// <see cref="ToString"/> gives "step=1.2ms step=0.3ms … total=2.1ms" for a Debug log line
/// (docs/benchmarks.md's lifecycle notes were measured with it).</summary>
internal sealed class StepTimes
{
    private readonly long _start = Stopwatch.GetTimestamp();
    private long _last;
    private readonly StringBuilder _text = new();

    public StepTimes() => _last = _start;

    public void Mark(string step)
    {
        var now = Stopwatch.GetTimestamp();
        _text.Append(step).Append('=').Append(Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)).Append("ms ");
        _last = now;
    }

    /// <summary>A step timed elsewhere (the shim's own, inside the next <see cref="Mark"/>'s).</summary>
    public void Add(string step, double ms) =>
        _text.Append(step).Append('=').Append(ms.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)).Append("ms ");

    public override string ToString() =>
        _text + "total=" + Stopwatch.GetElapsedTime(_start).TotalMilliseconds.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) + "ms";
}
