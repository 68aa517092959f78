using System.Globalization;
using CriRuntime.Cgroups;

namespace CriRuntime.Accounting;

/// <summary>One finite resource of a pod or container, as OpenVZ's /proc/user_beancounters shows
/// it: what is held now, the most held, the limit and how often the limit refused. A null value
/// is "the cgroup keeps no such counter" (never shown as 0); <see cref="Missing"/> says why when
/// the whole row has no source on this host.</summary>
public sealed record BeancounterRow(string Resource, ulong? Held, ulong? MaxHeld, ulong? Limit, ulong? FailCount, string Unit, string Source, string? Missing = null)
{
    public const ulong Unlimited = ulong.MaxValue;
}

/// <summary>Reads the beancounters of one cgroup (docs/partition-view.md, "Accounting" has the
/// table of sources): from the v1 hierarchy of each controller where v1 holds it, else from the
/// cgroup2 mount. Pure over <paramref name="read"/> (a file's text, or null when it does not
/// exist), so every row is unit-tested for v1 and v2 without a kernel.</summary>
public static class Beancounters
{
    /// <summary>A limit written as this or more is "no limit" (v1's page-counter maximum).</summary>
    private const ulong V1Unlimited = 1UL << 62;

    /// <param name="hugePageSizes">The node's huge page sizes as hugetlb files name them ("2MB"):
    /// <see cref="HugePageSizes"/>, read once per report.</param>
    public static IReadOnlyList<BeancounterRow> Read(CgroupLayout layout, string cgroupPath, Func<string, string?> read, IReadOnlyList<string> hugePageSizes)
    {
        var rel = cgroupPath.Trim('/');
        string? Dir(string controller) =>
            layout.V1Mounts.TryGetValue(controller, out var m) ? Path.Combine(m, rel)
            : layout.UnifiedMount is { } u && (read(Path.Combine(u, rel, "cgroup.controllers")) ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Contains(controller) ? Path.Combine(u, rel)
            : null;
        bool V1(string controller) => layout.V1Mounts.ContainsKey(controller);
        string? File(string? dir, string name) => dir is null ? null : read(Path.Combine(dir, name));
        var rows = new List<BeancounterRow>();

        // numproc: tasks in the cgroup (pids controller, same files on v1 and v2).
        var pids = Dir("pids");
        rows.Add(pids is null ? Absent("numproc", "processes", "pids controller not available") : new BeancounterRow("numproc",
            Num(File(pids, "pids.current")), Num(File(pids, "pids.peak")), Limit(File(pids, "pids.max")), Key(File(pids, "pids.events"), "max"),
            "processes", "pids.current, pids.peak, pids.max, pids.events max"));

        var mem = Dir("memory");
        if (mem is null)
        {
            rows.Add(Absent("physpages", "bytes", "memory controller not available"));
        }
        else if (V1("memory"))
        {
            var stat = File(mem, "memory.stat");
            rows.Add(new("physpages", Num(File(mem, "memory.usage_in_bytes")), Num(File(mem, "memory.max_usage_in_bytes")),
                Limit(File(mem, "memory.limit_in_bytes")), Num(File(mem, "memory.failcnt")), "bytes",
                "memory.usage_in_bytes, max_usage_in_bytes, limit_in_bytes, failcnt"));
            rows.Add(new("oomkills", Key(File(mem, "memory.oom_control"), "oom_kill"), null, null, null, "kills", "memory.oom_control oom_kill"));
            rows.Add(File(mem, "memory.kmem.usage_in_bytes") is { } kmem
                ? new("kmemsize", Num(kmem), Num(File(mem, "memory.kmem.max_usage_in_bytes")), Limit(File(mem, "memory.kmem.limit_in_bytes")),
                    Num(File(mem, "memory.kmem.failcnt")), "bytes", "memory.kmem.usage_in_bytes, max_usage_in_bytes, limit_in_bytes, failcnt")
                : Absent("kmemsize", "bytes", "this kernel's v1 memory controller has no kmem counters"));
            rows.Add(File(mem, "memory.kmem.tcp.usage_in_bytes") is { } tcp
                ? new("tcpbuf", Num(tcp), Num(File(mem, "memory.kmem.tcp.max_usage_in_bytes")), Limit(File(mem, "memory.kmem.tcp.limit_in_bytes")),
                    Num(File(mem, "memory.kmem.tcp.failcnt")), "bytes", "memory.kmem.tcp.usage_in_bytes, max_usage_in_bytes, limit_in_bytes, failcnt")
                : Absent("tcpbuf", "bytes", "this kernel's v1 memory controller has no kmem.tcp counters"));
            rows.Add(File(mem, "memory.memsw.usage_in_bytes") is { } memsw
                ? new("memswpages", Num(memsw), Num(File(mem, "memory.memsw.max_usage_in_bytes")), Limit(File(mem, "memory.memsw.limit_in_bytes")),
                    Num(File(mem, "memory.memsw.failcnt")), "bytes", "memory.memsw.* (memory + swap)")
                : Absent("swappages", "bytes", "swap accounting is off (no memory.memsw.* files)"));
            rows.Add(Stat("lockedpages", stat, "unevictable", "memory.stat unevictable"));
            rows.Add(Stat("shmpages", stat, "shmem", "memory.stat shmem"));
            rows.Add(Stat("pagecache", stat, "cache", "memory.stat cache"));
        }
        else
        {
            var stat = File(mem, "memory.stat");
            rows.Add(new("physpages", Num(File(mem, "memory.current")), Num(File(mem, "memory.peak")), Limit(File(mem, "memory.max")),
                Key(File(mem, "memory.events"), "max"), "bytes", "memory.current, memory.peak, memory.max, memory.events max"));
            rows.Add(new("oomkills", Key(File(mem, "memory.events"), "oom_kill"), null, null, null, "kills", "memory.events oom_kill"));
            rows.Add(Stat("kmemsize", stat, "kernel", "memory.stat kernel"));
            rows.Add(Stat("tcpbuf", stat, "sock", "memory.stat sock"));
            rows.Add(File(mem, "memory.swap.current") is { } swap
                ? new("swappages", Num(swap), Num(File(mem, "memory.swap.peak")), Limit(File(mem, "memory.swap.max")),
                    Key(File(mem, "memory.swap.events"), "max"), "bytes", "memory.swap.current, peak, max, events max")
                : Absent("swappages", "bytes", "no swap controller files"));
            rows.Add(Stat("lockedpages", stat, "unevictable", "memory.stat unevictable"));
            rows.Add(Stat("shmpages", stat, "shmem", "memory.stat shmem"));
            rows.Add(Stat("pagecache", stat, "file", "memory.stat file"));
        }

        // Huge pages: one row per size the controller lists.
        var hugetlb = Dir("hugetlb");
        foreach (var size in hugePageSizes)
        {
            rows.Add(hugetlb is null || File(hugetlb, V1("hugetlb") ? $"hugetlb.{size}.usage_in_bytes" : $"hugetlb.{size}.current") is null
                ? Absent($"hugepages.{size}", "bytes", "hugetlb controller not enabled for this cgroup")
                : V1("hugetlb")
                    ? new($"hugepages.{size}", Num(File(hugetlb, $"hugetlb.{size}.usage_in_bytes")), Num(File(hugetlb, $"hugetlb.{size}.max_usage_in_bytes")),
                        Limit(File(hugetlb, $"hugetlb.{size}.limit_in_bytes")), Num(File(hugetlb, $"hugetlb.{size}.failcnt")), "bytes", $"hugetlb.{size}.usage_in_bytes, max_usage_in_bytes, limit_in_bytes, failcnt")
                    : new($"hugepages.{size}", Num(File(hugetlb, $"hugetlb.{size}.current")), null, Limit(File(hugetlb, $"hugetlb.{size}.max")),
                        Key(File(hugetlb, $"hugetlb.{size}.events"), "max"), "bytes", $"hugetlb.{size}.current, max, events max"));
        }

        // Block I/O, cumulative.
        var io = Dir(V1("blkio") ? "blkio" : "io");
        if (io is null)
        {
            rows.Add(Absent("blkio.bytes", "bytes", "blkio/io controller not available"));
            rows.Add(Absent("blkio.ops", "operations", "blkio/io controller not available"));
        }
        else if (V1("blkio"))
        {
            rows.Add(new("blkio.bytes", Total(File(io, "blkio.throttle.io_service_bytes")), null, null, null, "bytes", "blkio.throttle.io_service_bytes Total"));
            rows.Add(new("blkio.ops", Total(File(io, "blkio.throttle.io_serviced")), null, null, null, "operations", "blkio.throttle.io_serviced Total"));
        }
        else
        {
            var stat = File(io, "io.stat");
            rows.Add(new("blkio.bytes", Sum(stat, "rbytes", "wbytes"), null, null, null, "bytes", "io.stat rbytes + wbytes"));
            rows.Add(new("blkio.ops", Sum(stat, "rios", "wios"), null, null, null, "operations", "io.stat rios + wios"));
        }

        // CPU time and throttling.
        var cpu = Dir("cpu");
        if (cpu is null)
        {
            rows.Add(Absent("cputime", "ns", "cpu controller not available"));
        }
        else if (V1("cpu"))
        {
            var acct = Dir("cpuacct");
            rows.Add(new("cputime", Num(File(acct, "cpuacct.usage")), null, null, null, "ns", "cpuacct.usage"));
            var stat = File(cpu, "cpu.stat");
            rows.Add(new("cputhrottle", Key(stat, "throttled_time"), null, null, Key(stat, "nr_throttled"), "ns", "cpu.stat throttled_time, nr_throttled"));
        }
        else
        {
            var stat = File(cpu, "cpu.stat");
            rows.Add(new("cputime", Key(stat, "usage_usec") * 1000, null, null, null, "ns", "cpu.stat usage_usec"));
            rows.Add(new("cputhrottle", Key(stat, "throttled_usec") * 1000, null, null, Key(stat, "nr_throttled"), "ns", "cpu.stat throttled_usec, nr_throttled"));
        }

        // OpenVZ counts these per container; cgroups have no counter for them.
        rows.Add(Absent("numfile", "files", "no cgroup counts open files (RLIMIT_NOFILE is per process)"));
        rows.Add(Absent("numtcpsock", "sockets", "no cgroup counts sockets"));
        return rows;
    }

    private static BeancounterRow Absent(string resource, string unit, string why) => new(resource, null, null, null, null, unit, "-", why);

    private static BeancounterRow Stat(string resource, string? stat, string key, string source) =>
        Key(stat, key) is { } v ? new(resource, v, null, null, null, "bytes", source) : Absent(resource, "bytes", $"no '{key}' in memory.stat");

    private static ulong? Num(string? text) =>
        text is not null && ulong.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;

    /// <summary>A limit file: "max" or a v1 maximum is <see cref="BeancounterRow.Unlimited"/>.</summary>
    private static ulong? Limit(string? text)
    {
        if (text is null) return null;
        var t = text.Trim();
        if (t == "max") return BeancounterRow.Unlimited;
        if (long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l) && l < 0) return BeancounterRow.Unlimited;
        return Num(t) is { } v ? v >= V1Unlimited ? BeancounterRow.Unlimited : v : null;
    }

    /// <summary>The value of "KEY VALUE" in a flat-keyed file (memory.stat, pids.events, cpu.stat).</summary>
    private static ulong? Key(string? text, string key)
    {
        if (text is null) return null;
        foreach (var line in text.Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && parts[0] == key) return Num(parts[1]);
        }
        return null;
    }

    /// <summary>The "Total N" line of a v1 blkio file; 0 when it lists nothing yet.</summary>
    private static ulong? Total(string? text)
    {
        if (text is null) return null;
        foreach (var line in text.Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && parts[0] == "Total") return Num(parts[1]);
        }
        return 0;
    }

    /// <summary>The sum of two keys over every device line of io.stat ("8:0 rbytes=1 wbytes=2 ...").</summary>
    private static ulong? Sum(string? ioStat, string a, string b)
    {
        if (ioStat is null) return null;
        ulong total = 0;
        foreach (var field in ioStat.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = field.IndexOf('=');
            if (eq > 0 && (field[..eq] == a || field[..eq] == b) && Num(field[(eq + 1)..]) is { } v) total += v;
        }
        return total;
    }

    /// <summary>The huge page sizes this node has (/sys/kernel/mm/hugepages), as hugetlb files name them.</summary>
    public static IReadOnlyList<string> HugePageSizes() =>
        Directory.Exists("/sys/kernel/mm/hugepages")
            ? [.. Directory.GetDirectories("/sys/kernel/mm/hugepages", "hugepages-*kB").Select(d => PageSize(Path.GetFileName(d))).Order()]
            : [];

    /// <summary>"hugepages-2048kB" as the kernel names the size in hugetlb files: "2MB".</summary>
    internal static string PageSize(string dirName)
    {
        var kb = ulong.Parse(dirName["hugepages-".Length..^"kB".Length], CultureInfo.InvariantCulture);
        return kb >= 1024 * 1024 ? $"{kb / (1024 * 1024)}GB" : kb >= 1024 ? $"{kb / 1024}MB" : $"{kb}KB";
    }

    /// <summary>The table in the layout of /proc/user_beancounters: one block per cgroup.</summary>
    public static string Format(string title, IReadOnlyList<BeancounterRow> rows)
    {
        static string V(ulong? v) => v is null ? "-" : v == BeancounterRow.Unlimited ? "max" : v.Value.ToString(CultureInfo.InvariantCulture);
        var sb = new System.Text.StringBuilder();
        sb.AppendLine(title);
        sb.AppendLine($"  {"resource",-20} {"held",20} {"maxheld",20} {"limit",20} {"failcnt",12}  unit / source");
        foreach (var r in rows)
        {
            sb.Append($"  {r.Resource,-20} {V(r.Held),20} {V(r.MaxHeld),20} {V(r.Limit),20} {V(r.FailCount),12}  ");
            sb.AppendLine(r.Missing is null ? $"{r.Unit}: {r.Source}" : $"not accounted: {r.Missing}");
        }
        return sb.ToString();
    }
}
