namespace CriRuntime.Tests.E2E.Harness;

/// <summary>After a test: nothing the daemon made may outlive it. No mount below the test's
/// directory, no process started from it (shims, containers), no cgroup named after it.</summary>
public static class Leaks
{
    public static void AssertNone(string dir)
    {
        var problems = new List<string>();
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var mountPoint = line.Split(' ')[4];
            if (mountPoint.StartsWith(dir, StringComparison.Ordinal)) problems.Add($"mount left: {mountPoint}");
        }
        foreach (var procDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(procDir), out var pid) || pid == Environment.ProcessId) continue;
            string cmdline;
            try { cmdline = File.ReadAllText(Path.Combine(procDir, "cmdline")).Replace('\0', ' '); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            if (cmdline.Contains(dir, StringComparison.Ordinal)) problems.Add($"process left: {pid} {cmdline.Trim()}");
        }
        foreach (var (device, backing) in LoopDevices())
            if (backing.StartsWith(dir, StringComparison.Ordinal)) problems.Add($"loop device left: {device} <- {backing}");
        var id = Path.GetFileName(dir);
        foreach (var hierarchy in Directory.Exists("/sys/fs/cgroup") ? Directory.EnumerateDirectories("/sys/fs/cgroup") : [])
        {
            try
            {
                foreach (var cg in Directory.EnumerateDirectories(hierarchy, "*", SearchOption.AllDirectories))
                    if (cg.Contains(id, StringComparison.Ordinal)) problems.Add($"cgroup left: {cg}");
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        Assert.True(problems.Count == 0, "resources leaked:\n" + string.Join('\n', problems));
    }

    /// <summary>Attached loop devices and their backing files (" (deleted)" when the file is gone).</summary>
    public static IEnumerable<(string Device, string BackingFile)> LoopDevices()
    {
        foreach (var sys in Directory.Exists("/sys/block") ? Directory.EnumerateDirectories("/sys/block", "loop*") : [])
        {
            string backing;
            try { backing = File.ReadAllText(Path.Combine(sys, "loop", "backing_file")).Trim(); }
            catch (IOException) { continue; } // not attached
            yield return ("/dev/" + Path.GetFileName(sys), backing);
        }
    }

    public static void RemoveEmptyCgroupRoot(string name)
    {
        if (!Directory.Exists("/sys/fs/cgroup")) return;
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
        {
            var root = Path.Combine(hierarchy, name);
            try { if (Directory.Exists(root)) Directory.Delete(root); }
            catch (IOException) { } // not empty: the leak check reports what is inside
        }
    }

    /// <summary>Lazily unmounts everything below <paramref name="dir"/> (deepest first) and kills
    /// processes started from it.</summary>
    public static void CleanUp(string dir)
    {
        var mounts = File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
            .Where(m => m.StartsWith(dir, StringComparison.Ordinal)).OrderByDescending(m => m.Length).ToList();
        foreach (var m in mounts) Shell.TryRun("umount", "-l", m);
        // Leaked cgroups named after the test: deepest first, so parents are empty when reached.
        if (Directory.Exists("/sys/fs/cgroup"))
            foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
            {
                var root = Path.Combine(hierarchy, Path.GetFileName(dir));
                if (!Directory.Exists(root)) continue;
                foreach (var cg in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories).Append(root).OrderByDescending(p => p.Length))
                    try { Directory.Delete(cg); } catch (IOException) { }
            }
        foreach (var procDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(procDir), out var pid) || pid == Environment.ProcessId) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(procDir, "cmdline")).Contains(dir, StringComparison.Ordinal))
                    System.Diagnostics.Process.GetProcessById(pid).Kill();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException) { }
        }
    }
}
