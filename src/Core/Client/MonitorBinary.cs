namespace CriRuntime.Shim.Client;

/// <summary>Where `criruntime-monitor` is, for the shim (which execs it when idle) and the daemon
/// (whose `launch` starts shims): `$CRIRUNTIME_MONITOR` ("0", "off" or "false": none; a path:
/// that one, if it exists), else criruntime-monitor beside the given binary, if it is there.</summary>
public static class MonitorBinary
{
    public static string? Find(string? besideBinary)
    {
        var env = Environment.GetEnvironmentVariable("CRIRUNTIME_MONITOR");
        if (env is "0" or "off" or "false") return null;
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : null;
        if (besideBinary is null) return null;
        var next = Path.Combine(Path.GetDirectoryName(besideBinary) ?? ".", "criruntime-monitor");
        return File.Exists(next) ? next : null;
    }
}
