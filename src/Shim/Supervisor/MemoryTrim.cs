using System.Globalization;
using System.Runtime.InteropServices;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Lowers the RSS of an idle shim (there is one per container). Setup and each control
/// request touch code and read-only data of the executable and libc, and the kernel's
/// fault-around maps whole 64 KiB windows of them, so a shim that then sleeps would still count
/// ~3 MB of pages it is not using. MADV_DONTNEED on read-only file mappings that hold no private
/// (copied-on-write) page unmaps them without losing anything: the pages stay in the page cache
/// and fault back in when next used. Mappings with private pages (.data, applied relocations)
/// are never touched: dropping those would discard their contents. Then an aggressive GC returns
/// the setup garbage.</summary>
public static partial class MemoryTrim
{
    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint addr, nuint length, int advice);

    private const int MADV_DONTNEED = 4;

    public static void Idle()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        DropCleanFilePages();
    }

    public static void DropCleanFilePages()
    {
        string[] lines;
        try { lines = File.ReadAllLines("/proc/self/smaps"); }
        catch (IOException) { return; }
        (nint Start, nint End)? candidate = null;
        foreach (var line in lines)
        {
            if (IsHeader(line))
            {
                // "start-end perms offset dev inode path"
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                candidate = null;
                if (parts.Length >= 6 && parts[1] is "r-xp" or "r--p" && parts[5].StartsWith('/'))
                {
                    var range = parts[0].Split('-');
                    candidate = (nint.Parse(range[0], NumberStyles.HexNumber), nint.Parse(range[1], NumberStyles.HexNumber));
                }
            }
            else if (candidate is { } c && line.StartsWith("Anonymous:", StringComparison.Ordinal))
            {
                if (line.AsSpan(10).Trim().StartsWith("0 kB")) Madvise(c.Start, (nuint)(c.End - c.Start), MADV_DONTNEED);
                candidate = null; // best effort: a failed madvise only costs memory
            }
        }
    }

    /// <summary>Mapping header lines start with "start-end " in hex; attribute lines with "Name:".</summary>
    private static bool IsHeader(string line)
    {
        var dash = line.IndexOf('-');
        var space = line.IndexOf(' ');
        return dash > 0 && space > dash && line.AsSpan(0, dash).ContainsAnyExcept("0123456789abcdef") == false;
    }
}
