using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>Lowers the RSS of an idle process: the shim (there is one per container) and the
/// daemon after a burst of requests (Server/IdleTrim.cs). Setup and each control
/// request touch code and read-only data of the executable and libc, and the kernel's
/// fault-around maps whole 64 KiB windows of them, so a shim that then sleeps would still count
/// pages it is not using. MADV_DONTNEED on read-only file mappings that hold no private
/// (copied-on-write) page unmaps them without losing anything: the pages stay in the page cache
/// and fault back in when next used. Mappings with private pages (.data, applied relocations)
/// are never touched: dropping those would discard their contents.
/// The GC runs first (aggressive: it decommits what it frees), and the scan of
/// /proc/self/smaps allocates nothing on the managed heap, so it leaves no garbage behind.</summary>
internal static unsafe partial class MemoryTrim
{
    private const int MADV_DONTNEED = 4;
    private const int BufferSize = 4 << 20; // smaps of a shim is ~100 KiB; malloc serves this with mmap, freed at once

    public static void Idle()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        // Finalizers the collection queued run on the finalizer thread; were they still running
        // during the scan below, the code they touch would stay resident.
        GC.WaitForPendingFinalizers();
        Libc.MallocTrim(0); // gives back free pages inside the malloc heap, not only at its top
        DropCleanFilePages();
    }

    public static void DropCleanFilePages()
    {
        var fd = Libc.Open("/proc/self/smaps", Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return; // best effort: failing only costs memory
        var buffer = (byte*)NativeMemory.Alloc(BufferSize);
        try
        {
            var length = 0;
            while (length < BufferSize)
            {
                var n = Libc.Read(fd, buffer + length, BufferSize - length);
                if (n <= 0) break;
                length += (int)n;
            }
            Scan(new ReadOnlySpan<byte>(buffer, length));
        }
        finally
        {
            NativeMemory.Free(buffer);
            Libc.Close(fd);
        }
    }

    private static void Scan(ReadOnlySpan<byte> smaps)
    {
        nint start = 0, end = 0;
        var candidate = false;
        while (!smaps.IsEmpty)
        {
            var nl = smaps.IndexOf((byte)'\n');
            var line = nl < 0 ? smaps : smaps[..nl];
            smaps = nl < 0 ? default : smaps[(nl + 1)..];
            if (TryHeader(line, out var s, out var e, out var eligible))
            {
                (start, end, candidate) = (s, e, eligible);
            }
            else if (candidate && line.StartsWith("Anonymous:"u8))
            {
                if (line[10..].Trim((byte)' ').StartsWith("0 kB"u8)) Libc.Madvise(start, (nuint)(end - start), MADV_DONTNEED);
                candidate = false;
            }
        }
    }

    /// <summary>"start-end perms offset dev inode path": eligible when read-only (r-xp or r--p)
    /// and backed by a file (the path starts with '/').</summary>
    private static bool TryHeader(ReadOnlySpan<byte> line, out nint start, out nint end, out bool eligible)
    {
        start = end = 0;
        eligible = false;
        var dash = line.IndexOf((byte)'-');
        var space = line.IndexOf((byte)' ');
        if (dash <= 0 || space <= dash || !IsHex(line[..dash]) || !IsHex(line[(dash + 1)..space])) return false;
        start = ParseHex(line[..dash]);
        end = ParseHex(line[(dash + 1)..space]);
        var perms = line[(space + 1)..];
        eligible = (perms.StartsWith("r-xp "u8) || perms.StartsWith("r--p "u8)) && line.IndexOf((byte)'/') > 0;
        return true;
    }

    private static bool IsHex(ReadOnlySpan<byte> s) => !s.IsEmpty && s.IndexOfAnyExcept("0123456789abcdef"u8) < 0;

    private static nint ParseHex(ReadOnlySpan<byte> s)
    {
        nint v = 0;
        foreach (var c in s) v = (v << 4) | (nint)(c <= '9' ? c - '0' : c - 'a' + 10);
        return v;
    }
}
