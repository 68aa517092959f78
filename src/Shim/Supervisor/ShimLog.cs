namespace CriRuntime.Shim.Supervisor;

/// <summary>The shim's own diagnostics (shim.log in the state dir): the supervisor has no
/// terminal, its stdio is /dev/null.</summary>
public sealed class ShimLog(string path)
{
    private readonly Lock _lock = new();

    public void Info(string message) => Write("info", message);
    public void Warn(string message) => Write("warn", message);
    public void Error(string message) => Write("error", message);

    private void Write(string level, string message)
    {
        lock (_lock)
        {
            try { File.AppendAllText(path, $"{DateTime.UtcNow:O} {level} {message}\n"); }
            catch (IOException) { } // diagnostics must never take the container down
        }
    }
}
