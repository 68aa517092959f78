using System.Text;

namespace CriRuntime.Cgroups;

public enum CgroupMode
{
    /// <summary>Only v1 hierarchies, one per controller (or co-mounted group).</summary>
    V1,
    /// <summary>One cgroup2 hierarchy holds every controller.</summary>
    V2,
    /// <summary>v1 controller hierarchies plus a cgroup2 mount (e.g. /sys/fs/cgroup/unified)
    /// holding whatever controllers v1 did not claim.</summary>
    Hybrid,
}

/// <summary>Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo rather than
/// assumed: distributions co-mount controllers ("cpu,cpuacct") and add symlinks, and containers
/// see other mount points.</summary>
public sealed record CgroupLayout
{
    public required CgroupMode Mode { get; init; }

    /// <summary>v1 controller name (e.g. "cpu", "memory") to the mount point of its hierarchy.
    /// Co-mounted controllers map to the same directory. Named hierarchies (name=systemd) are not
    /// listed: they carry no controller.</summary>
    public required IReadOnlyDictionary<string, string> V1Mounts { get; init; }

    /// <summary>The cgroup2 mount point, or null when there is none.</summary>
    public string? UnifiedMount { get; init; }

    /// <summary>The mountinfo lines of the cgroup and cgroup2 mounts this layout was read from:
    /// what <see cref="MountsVariable"/> hands a child, which parses them into the same layout.</summary>
    public string MountLines { get; init; } = "";

    /// <summary>The environment variable through which the daemon gives its shims (and they their
    /// container inits) the cgroup mounts it found, so that they need not read /proc/self/mountinfo:
    /// on a node with a thousand pods that file is megabytes the kernel writes out anew for every
    /// reader, and each container start read it twice. Hierarchies are mounted at boot, so the
    /// daemon's view holds for its children.</summary>
    public const string MountsVariable = "CRIRUNTIME_CGROUP_MOUNTS";

    /// <summary>Each v1 hierarchy once (co-mounted controllers share one directory).</summary>
    public IReadOnlyList<string> V1Hierarchies => [.. V1Mounts.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    // Used when /proc/cgroups is not available to tell controllers from other mount options.
    private static readonly string[] KnownV1Controllers =
    [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
        "net_cls", "net_prio", "perf_event", "rdma", "misc",
    ];

    /// <summary>Reads this process's view of the system: the cgroup mounts its parent gave it
    /// (<see cref="MountsVariable"/>), else /proc/self/mountinfo.</summary>
    public static CgroupLayout Detect() => Detect(Environment.GetEnvironmentVariable);

    internal static CgroupLayout Detect(Func<string, string?> environment)
    {
        var procCgroups = File.Exists("/proc/cgroups") ? File.ReadAllText("/proc/cgroups") : null;
        if (environment(MountsVariable) is { Length: > 0 } given)
        {
            try { return Parse(given, procCgroups); }
            catch (CgroupException) { } // not what a daemon writes: read the real thing
        }
        return Parse(File.ReadAllText("/proc/self/mountinfo"), procCgroups);
    }

    /// <summary>Pure: the layout described by a mountinfo text and, optionally, /proc/cgroups
    /// (whose subsystem names tell controllers apart from other superblock options).</summary>
    public static CgroupLayout Parse(string mountinfo, string? procCgroups = null)
    {
        var known = procCgroups is null ? new HashSet<string>(KnownV1Controllers, StringComparer.Ordinal) : ParseSubsystems(procCgroups);
        var v1 = new Dictionary<string, string>(StringComparer.Ordinal);
        string? unified = null;
        var lines = new StringBuilder();

        foreach (var rawLine in mountinfo.AsSpan().EnumerateLines())
        {
            var line = rawLine.Trim();
            if (line.IsEmpty) continue;
            // "36 35 98:0 /root /mnt rw,noatime master:1 - cgroup cgroup rw,cpu,cpuacct":
            // the optional fields before " - " vary in number, so split on the separator first.
            var sep = line.IndexOf(" - ", StringComparison.Ordinal);
            if (sep < 0) continue;
            var head = line[..sep].ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var tail = line[(sep + 3)..].ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (head.Length < 5 || tail.Length < 1) continue;
            var mountPoint = Unescape(head[4]);
            var fsType = tail[0];
            if (fsType is "cgroup" or "cgroup2") lines.Append(line).Append('\n');
            if (fsType == "cgroup2")
            {
                // The first cgroup2 mount wins: later ones are bind mounts of the same hierarchy.
                unified ??= mountPoint;
            }
            else if (fsType == "cgroup" && tail.Length >= 3)
            {
                foreach (var option in tail[2].Split(','))
                {
                    if (known.Contains(option)) v1.TryAdd(option, mountPoint);
                }
            }
        }

        var mode = (v1.Count > 0, unified is not null) switch
        {
            (true, true) => CgroupMode.Hybrid,
            (true, false) => CgroupMode.V1,
            (false, true) => CgroupMode.V2,
            _ => throw new CgroupException("no cgroup hierarchy is mounted (no cgroup or cgroup2 entry in mountinfo)"),
        };
        return new CgroupLayout { Mode = mode, V1Mounts = v1, UnifiedMount = unified, MountLines = lines.ToString() };
    }

    private static HashSet<string> ParseSubsystems(string procCgroups)
    {
        // "#subsys_name hierarchy num_cgroups enabled"; a disabled controller (cgroup_disable=)
        // can still appear in mount options on old kernels, so only enabled ones count.
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in procCgroups.Split('\n'))
        {
            if (line.StartsWith('#')) continue;
            var f = line.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 4 && f[3] == "1") set.Add(f[0]);
        }
        return set;
    }

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo octal (also used by
    /// the checkpoint's reading of the container's mountinfo).</summary>
    internal static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && IsOctal(s, i + 1))
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }

    private static bool IsOctal(string s, int start) =>
        start + 3 <= s.Length && s[start] is >= '0' and <= '7' && s[start + 1] is >= '0' and <= '7' && s[start + 2] is >= '0' and <= '7';
}
