namespace CriRuntime.Shim.Client;

/// <summary>The supervisor's readiness report: one line on its fd 3 once the container is
/// created, "ok SHIMPID PID NAME:START:END …" (the create phases, Unix nanoseconds) or
/// "error MESSAGE" (docs/shim-protocol.md, "Create"). PID is 0 for a container restored at start
/// (CRIU brings its init back then). `criruntime-monitor launch` passes it on
/// as it is; `criruntime-shim create` prints it as JSON.</summary>
public sealed record ShimReport(int ShimPid, int Pid, IReadOnlyList<ShimPhase> Phases)
{
    /// <summary>The report of a created container, or null and why not (the shim's error, or
    /// what was wrong with the line).</summary>
    public static ShimReport? Parse(string line, out string error)
    {
        line = line.Trim();
        error = "";
        if (line.StartsWith("error ", StringComparison.Ordinal))
        {
            error = line[6..];
            return null;
        }
        var parts = line.Split(' ');
        if (parts is ["ok", var shimPid, var pid, .. var phases]
            && int.TryParse(shimPid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0
            && int.TryParse(pid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var p))
            return new ShimReport(s, p, [.. phases.Select(ParsePhase).OfType<ShimPhase>()]);
        error = line.Length == 0 ? "the shim reported nothing" : $"unreadable report from the shim: \"{(line.Length > 200 ? line[..200] + "…" : line)}\"";
        return null;
    }

    /// <summary>"NAME:START:END"; null when it is not that (a phase is a nicety, never a failure).</summary>
    private static ShimPhase? ParsePhase(string phase)
    {
        var f = phase.Split(':');
        return f.Length == 3 && f[0].Length > 0
            && long.TryParse(f[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var start)
            && long.TryParse(f[2], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var end)
            ? new ShimPhase { Name = f[0], Start = start, End = end }
            : null;
    }
}
