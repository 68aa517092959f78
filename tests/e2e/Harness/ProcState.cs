using System.Runtime.InteropServices;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>What the kernel says a process is doing (the state letter of /proc/PID/stat), and
/// signals to it.</summary>
public static partial class ProcState
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

    public const int SigTerm = 15, SigStop = 19, SigCont = 18;

    /// <summary>kill(2): 0, or -1 with the errno in <see cref="Marshal.GetLastPInvokeError"/>.</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Signal(int pid, int signal);

    /// <summary>Polls <paramref name="condition"/> every 20 ms until it holds; once
    /// <paramref name="ct"/> is cancelled, fails with what was not seen.</summary>
    public static async Task Eventually(Func<bool> condition, Func<string> what, CancellationToken ct)
    {
        while (!condition())
        {
            if (ct.IsCancellationRequested) throw new TimeoutException($"not seen: {what()}");
            await Task.Delay(20, CancellationToken.None);
        }
    }

    /// <summary><see cref="Eventually(Func{bool}, Func{string}, CancellationToken)"/> within <paramref name="timeout"/>.</summary>
    public static async Task Eventually(Func<bool> condition, string what, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await Eventually(condition, () => what, cts.Token);
    }
}
