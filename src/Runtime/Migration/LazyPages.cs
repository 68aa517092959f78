using System.Globalization;
using CriRuntime.Errors;

namespace CriRuntime.Migration;

/// <summary>What lazy (post-copy) migration needs of the host, checked before anything is frozen.
/// CRIU's lazy dump keeps the pod's memory in pipes for its page server, and asks for pipes of
/// about 3.3 MiB (F_SETPIPE_SZ): a process without CAP_SYS_RESOURCE gets at most
/// fs.pipe-max-size, 1 MiB by default, and the dump would fail with the pod already frozen.</summary>
public static class LazyPages
{
    /// <summary>fs.pipe-max-size that lets CRIU's pipes grow to what the lazy dump asks for (a power
    /// of two: the kernel rounds the request up to one).</summary>
    public const long PipeMaxSizeNeeded = 4 << 20;

    public const string PipeMaxSizeFile = "/proc/sys/fs/pipe-max-size";

    /// <summary>CAP_SYS_RESOURCE's bit: with it in the effective set, the pipe limit does not apply.</summary>
    private const int CapSysResource = 24;

    /// <summary>Why lazy mode cannot run here, or null when it can (pure: unit-tested).</summary>
    /// <param name="pipeMaxSize">the text of /proc/sys/fs/pipe-max-size.</param>
    /// <param name="status">the text of /proc/self/status (CapEff).</param>
    public static string? Unavailable(string pipeMaxSize, string status)
    {
        if (HasEffective(status, CapSysResource)) return null;
        if (!long.TryParse(pipeMaxSize.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var max))
            return $"{PipeMaxSizeFile}: '{pipeMaxSize.Trim()}' is not a number";
        return max >= PipeMaxSizeNeeded ? null
            : $"lazy migration needs pipes of about 3.3 MiB for CRIU's page server: fs.pipe-max-size is {max} and must be at least {PipeMaxSizeNeeded} " +
              $"(sysctl -w fs.pipe-max-size={PipeMaxSizeNeeded}), or the daemon needs CAP_SYS_RESOURCE; use mode cold meanwhile";
    }

    /// <summary>FailedPrecondition unless this host can run a lazy migration.</summary>
    public static void Require()
    {
        if (Unavailable(File.ReadAllText(PipeMaxSizeFile), File.ReadAllText("/proc/self/status")) is { } why)
            throw Fail.FailedPrecondition(why);
    }

    private static bool HasEffective(string status, int bit)
    {
        foreach (var line in status.Split('\n'))
            if (line.StartsWith("CapEff:", StringComparison.Ordinal)
                && ulong.TryParse(line.AsSpan("CapEff:".Length).Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var mask))
                return (mask & (1UL << bit)) != 0;
        return false;
    }
}
