namespace CriRuntime.Tests.E2E.Harness;

/// <summary>What the kernel says a process is doing: the state letter of /proc/PID/stat.</summary>
public static class ProcState
{
    /// <summary>R, S, D, T, Z, ...; null when there is no such process. Read after the command
    /// name's closing ')': a name may have spaces and parentheses in it.</summary>
    public static char? Of(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2];
        }
        catch (IOException) { return null; }
    }

    /// <summary>Alive and not a zombie (a killed process nobody reaped yet is gone for our purposes).</summary>
    public static bool IsRunning(int pid) => Of(pid) is { } s && s is not ('Z' or 'X');
}
