using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace CriRuntime.Storage;

/// <summary>Block device numbers for I/O limits, always of a whole disk: the kernel refuses
/// io.max (and ignores v1 throttles) on a partition, so a partition resolves to its disk through
/// sysfs (<c>/sys/dev/block/MAJ:MIN/partition</c> exists; the parent directory is the disk).
/// The sysfs directory and the two stat calls are parameters so tests run on a fake tree.</summary>
public sealed class BlockDevices(
    string sysDevBlock = "/sys/dev/block",
    Func<string, (uint Mode, uint Major, uint Minor)?>? stat = null,
    Func<string, (uint Major, uint Minor)?>? fileSystemDevice = null)
{
    public static readonly BlockDevices Host = new();

    private readonly Func<string, (uint Mode, uint Major, uint Minor)?> _stat = stat ?? (p => Interop.Libc.DeviceInfo(p));
    private readonly Func<string, (uint Major, uint Minor)?> _fsDevice = fileSystemDevice ?? Interop.Libc.FileSystemDevice;

    public static bool IsMajorMinor(string token) => ParseMajorMinor(token) is not null;

    public static (long Major, long Minor)? ParseMajorMinor(string token)
    {
        var colon = token.IndexOf(':');
        return colon > 0 && long.TryParse(token[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            && long.TryParse(token[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var minor)
            ? (major, minor) : null;
    }

    /// <summary>The disk of a block device path (symlinks followed), or null when the path is no
    /// block device.</summary>
    public (long Major, long Minor)? OfPath(string path) =>
        _stat(path) is { } d && (d.Mode & Interop.Libc.S_IFMT) == Interop.Libc.S_IFBLK ? WholeDisk(d.Major, d.Minor) : null;

    /// <summary>The disk holding the file system a directory is on, or null when that file system
    /// has no block device (overlay, tmpfs, btrfs subvolumes: an anonymous st_dev with no sysfs entry).</summary>
    public (long Major, long Minor)? Under(string directory) =>
        _fsDevice(directory) is { } d && d.Major != 0 && Directory.Exists(SysPath(d.Major, d.Minor)) ? WholeDisk(d.Major, d.Minor) : null;

    /// <summary>A partition's disk; any other device as it is.</summary>
    public (long Major, long Minor) WholeDisk(long major, long minor)
    {
        var dir = SysPath(major, minor);
        if (!File.Exists(Path.Combine(dir, "partition"))) return (major, minor);
        // /sys/dev/block/8:1 -> ../../devices/.../block/sda/sda1: the disk is the parent.
        var real = new DirectoryInfo(dir).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? dir;
        var disk = Path.GetDirectoryName(real.TrimEnd('/'));
        var dev = disk is null ? null : Path.Combine(disk, "dev");
        return dev is not null && File.Exists(dev) && ParseMajorMinor(File.ReadAllText(dev).Trim()) is { } whole ? whole : (major, minor);
    }

    /// <summary>The I/O scheduler in use on a device ("bfq", "mq-deadline", "none"), or null when
    /// sysfs does not say.</summary>
    public string? Scheduler(long major, long minor)
    {
        var file = Path.Combine(SysPath(major, minor), "queue", "scheduler");
        if (!File.Exists(file)) return null;
        var text = File.ReadAllText(file).Trim();
        var open = text.IndexOf('[');
        var close = text.IndexOf(']');
        return open >= 0 && close > open ? text[(open + 1)..close] : text.Length > 0 && !text.Contains(' ') ? text : null;
    }

    private string SysPath(long major, long minor) => Path.Combine(sysDevBlock, $"{major}:{minor}");

    /// <summary>The paths a device pattern names: shell wildcards (*, ?, [a-z]) in its last name
    /// match the entries of its directory; a pattern without wildcards is itself.</summary>
    public static IEnumerable<string> Expand(string pattern)
    {
        var name = Path.GetFileName(pattern);
        if (name.IndexOfAny(['*', '?', '[']) < 0) return [pattern];
        var dir = Path.GetDirectoryName(pattern);
        if (dir is null || !Directory.Exists(dir)) return [];
        var regex = new Regex(GlobRegex(name), RegexOptions.CultureInvariant);
        return Directory.EnumerateFileSystemEntries(dir).Where(e => regex.IsMatch(Path.GetFileName(e))).Order(StringComparer.Ordinal).ToList();
    }

    internal static string GlobRegex(string glob)
    {
        var sb = new StringBuilder("^");
        for (var i = 0; i < glob.Length; i++)
        {
            var ch = glob[i];
            if (ch == '*') sb.Append(".*");
            else if (ch == '?') sb.Append('.');
            else if (ch == '[' && glob.IndexOf(']', i + 1) is var end && end > i + 1)
            {
                var set = glob[(i + 1)..end];
                sb.Append('[').Append(set[0] == '!' ? "^" + Regex.Escape(set[1..]).Replace("\\-", "-") : Regex.Escape(set).Replace("\\-", "-")).Append(']');
                i = end;
            }
            else sb.Append(Regex.Escape(ch.ToString()));
        }
        return sb.Append('$').ToString();
    }
}
