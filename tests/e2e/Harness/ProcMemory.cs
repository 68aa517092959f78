namespace CriRuntime.Tests.E2E.Harness;

/// <summary>What the kernel says a process's memory is (/proc/PID/smaps_rollup).</summary>
public static class ProcMemory
{
    /// <summary>Private memory in KiB: Private_Clean + Private_Dirty, the pages no other process maps.</summary>
    public static long PrivateKb(int pid)
    {
        var rollup = File.ReadAllLines($"/proc/{pid}/smaps_rollup").Select(l => l.Split(':', 2)).Where(p => p.Length == 2)
            .ToDictionary(p => p[0].Trim(), p => p[1].Trim());
        return long.Parse(rollup["Private_Clean"].Split(' ')[0]) + long.Parse(rollup["Private_Dirty"].Split(' ')[0]);
    }

    /// <summary>For a failure message: private KiB (clean + dirty) per mapped file or kind of
    /// anonymous mapping (/proc/PID/smaps), largest first.</summary>
    public static string Breakdown(int pid)
    {
        var byName = new Dictionary<string, (long Clean, long Dirty)>();
        var name = "";
        foreach (var line in File.ReadLines($"/proc/{pid}/smaps"))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 5 && fields[0].Contains('-') && !fields[0].EndsWith(':'))
                name = fields.Length >= 6 ? string.Join(' ', fields[5..]) : "[anon]";
            else if (fields is ["Private_Clean:", var kb, "kB"])
                byName[name] = (byName.GetValueOrDefault(name).Clean + long.Parse(kb), byName.GetValueOrDefault(name).Dirty);
            else if (fields is ["Private_Dirty:", var dkb, "kB"])
                byName[name] = (byName.GetValueOrDefault(name).Clean, byName.GetValueOrDefault(name).Dirty + long.Parse(dkb));
        }
        return string.Join('\n', byName.Where(p => p.Value.Clean + p.Value.Dirty > 0).OrderByDescending(p => p.Value.Clean + p.Value.Dirty)
            .Select(p => $"{p.Value.Clean + p.Value.Dirty,8} kB private ({p.Value.Clean} clean, {p.Value.Dirty} dirty) {p.Key}"));
    }
}
