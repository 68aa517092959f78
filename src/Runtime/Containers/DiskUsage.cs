namespace CriRuntime.Containers;

/// <summary>Bytes and inodes below a directory (a writable layer), without following links.</summary>
public static class DiskUsage
{
    public static (ulong Bytes, ulong Inodes) Measure(string dir)
    {
        if (!Directory.Exists(dir)) return (0, 0);
        ulong bytes = 0, inodes = 1;
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = true, ReturnSpecialDirectories = false };
        foreach (var entry in new DirectoryInfo(dir).EnumerateFileSystemInfos("*", options))
        {
            inodes++;
            if (entry is FileInfo { LinkTarget: null } f) bytes += (ulong)f.Length;
        }
        return (bytes, inodes);
    }
}
