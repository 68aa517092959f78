using System.Diagnostics;
using System.Runtime.InteropServices;

namespace CriRuntime.Bench;

/// <summary>Processes and memory as /proc shows them.</summary>
public static partial class Procs
{
    public sealed record Proc(int Pid, int PPid, string Comm, string Cmdline);

    public static List<Proc> All()
    {
        var list = new List<Proc>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // "PID (COMM) S PPID ...": comm may hold spaces and parentheses, so split at the last ')'.
                var close = stat.LastIndexOf(')');
                var comm = stat[(stat.IndexOf('(') + 1)..close];
                var fields = stat[(close + 2)..].Split(' ');
                if (fields[0] == "Z") continue;
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ').Trim();
                list.Add(new Proc(pid, int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture), comm, cmdline));
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return list;
    }

    /// <summary>(Rss, Pss) in KiB summed over the processes; ones that ended meanwhile are skipped.</summary>
    public static (long RssKb, long PssKb, int Count) Memory(IEnumerable<int> pids)
    {
        long rss = 0, pss = 0;
        var n = 0;
        foreach (var pid in pids)
        {
            try
            {
                var (r, p) = Stats.ParseSmapsRollup(File.ReadAllText($"/proc/{pid}/smaps_rollup"));
                rss += r; pss += p; n++;
            }
            catch (IOException) { }
        }
        return (rss, pss, n);
    }

    /// <summary>MemTotal - MemAvailable in KiB; with <paramref name="dropCaches"/>, after dropping the
    /// page cache first (as the memory-per-pod figure is measured).</summary>
    public static long MemUsedKb(bool dropCaches = false)
    {
        if (dropCaches) File.WriteAllText("/proc/sys/vm/drop_caches", "3");
        var text = File.ReadAllText("/proc/meminfo");
        return Stats.MeminfoKb(text, "MemTotal") - Stats.MeminfoKb(text, "MemAvailable");
    }

    public static int OpenFds(int pid)
    {
        try { return Directory.GetFiles($"/proc/{pid}/fd").Length; }
        catch (IOException) { return -1; }
    }

    public static void Signal(int pid, int signal) => _ = Kill(pid, signal);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>Runs a tool to completion; throws with its output when it fails.</summary>
    public static string Run(string file, params string[] args)
    {
        var (code, stdout, stderr) = TryRun(file, args);
        if (code != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {code}:\n{stdout}\n{stderr}");
        return stdout;
    }

    public static (int Code, string Stdout, string Stderr) TryRun(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        // Not installed (e.g. `--runtimes criruntime` on a machine without containerd): 127 as a shell says.
        try { p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}"); }
        catch (System.ComponentModel.Win32Exception e) { return (127, "", $"{file}: {e.Message}"); }
        using var _ = p;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
