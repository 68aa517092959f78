using System.Globalization;
using CriRuntime.Errors;
using CriRuntime.Oci;

namespace CriRuntime.Storage;

/// <summary>The blockio class a container's annotation chose, with what to name in errors.</summary>
public sealed record SelectedBlockioClass(BlockioClass Class, string Annotation, string Source)
{
    public string Field => $"annotation {Annotation}: blockio class {Class.Name} ({Source})";
}

/// <summary>I/O weights and rate limits merged from three inputs, later wins per device and key:
/// the container's blockio class (<see cref="BlockioClasses"/>), then the CRI <c>unified</c>
/// map's <c>io.max</c> ("DEVICE rbps=N wbps=N riops=N wiops=N", one device a line) and
/// <c>io.weight</c> ("default N" or "DEVICE N", N in io.weight's 1..10000), then the pod annotation
/// <c>io-limit.criruntime.io/container.NAME</c> (io.max's syntax). The result is the OCI blockIO
/// weight, weight devices and throttles the cgroup managers write: <c>blkio.throttle.*</c> and
/// <c>blkio[.bfq].weight[_device]</c> on v1 and hybrid hosts, io.max and io.weight on v2. DEVICE is
/// MAJ:MIN, a device path, or <c>rootfs</c> (the container's own loop device with a disk quota,
/// else the disk under the storage root).</summary>
public static class IoLimits
{
    public const string UnifiedKey = "io.max";
    public const string UnifiedWeightKey = "io.weight";
    public const string PodAnnotationPrefix = "io-limit.criruntime.io/container.";
    /// <summary>The pod annotation limiting the pod cgroup (all its containers together).</summary>
    public const string PodWideAnnotation = "io-limit.criruntime.io/pod";

    private sealed class Merged
    {
        public readonly Dictionary<(long, long, string), ulong> Throttles = [];
        public readonly Dictionary<(long, long), ushort> WeightDevices = [];
        public ushort? Weight;
        public Func<long, long, string?> Scheduler = (_, _) => null;

        /// <summary>A device weight works only where a proportional scheduler runs: on v1 BFQ
        /// refuses (EOPNOTSUPP) a device it does not schedule, so say so here, naming the input.</summary>
        public void SetWeight((long Major, long Minor) d, ushort weight, string field)
        {
            if (Scheduler(d.Major, d.Minor) is { } s && s is not ("bfq" or "cfq"))
                throw Fail.InvalidArgument($"{field}: a weight on device {d.Major}:{d.Minor} needs the bfq I/O scheduler, its scheduler is {s} (/sys/dev/block/{d.Major}:{d.Minor}/queue/scheduler)");
            WeightDevices[d] = weight;
        }
        public bool Any => Throttles.Count > 0 || WeightDevices.Count > 0 || Weight is not null;
    }

    /// <summary><paramref name="resources"/> with the class's limits, io.max and io.weight moved out
    /// of unified, and the pod annotation's limits as blockIO. <paramref name="device"/> answers a
    /// device path's (or "rootfs"'s) major:minor of a whole disk, or null when there is none;
    /// <paramref name="expand"/> lists the paths a class's device pattern matches.
    /// InvalidArgument names the key, annotation or class.</summary>
    public static LinuxResources? Apply(LinuxResources? resources, string unifiedField, string containerName,
        IReadOnlyDictionary<string, string> podAnnotations, Func<string, (long Major, long Minor)?> device,
        SelectedBlockioClass? blockio = null, Func<string, IEnumerable<string>>? expand = null, Func<long, long, string?>? scheduler = null)
    {
        var m = new Merged { Scheduler = scheduler ?? ((_, _) => null) };
        if (blockio is not null) ApplyClass(blockio, device, expand ?? (p => [p]), m);
        var unified = resources?.Unified;
        if (unified is not null && unified.TryGetValue(UnifiedKey, out var fromUnified))
            Parse(fromUnified, $"{unifiedField}[{UnifiedKey}]", device, m);
        if (unified is not null && unified.TryGetValue(UnifiedWeightKey, out var weights))
            ParseWeights(weights, $"{unifiedField}[{UnifiedWeightKey}]", device, m);
        var key = PodAnnotationPrefix + containerName;
        if (podAnnotations.TryGetValue(key, out var fromPod))
            Parse(fromPod, $"annotation {key}", device, m);
        if (!m.Any) return resources;
        return Result(resources, m);
    }

    /// <summary>The pod annotation <c>io-limit.criruntime.io/pod</c> as blockIO for the pod cgroup
    /// (null when the pod has none).</summary>
    public static LinuxBlockIo? PodLimits(IReadOnlyDictionary<string, string> podAnnotations, Func<string, (long Major, long Minor)?> device)
    {
        if (!podAnnotations.TryGetValue(PodWideAnnotation, out var text)) return null;
        var m = new Merged();
        Parse(text, $"annotation {PodWideAnnotation}", device, m);
        return Result(null, m).BlockIo;
    }

    private static LinuxResources Result(LinuxResources? resources, Merged m)
    {
        List<LinuxThrottleDevice>? Of(string kind) => NullIfEmpty([.. m.Throttles.Where(l => l.Key.Item3 == kind)
            .OrderBy(l => l.Key.Item1).ThenBy(l => l.Key.Item2)
            .Select(l => new LinuxThrottleDevice { Major = l.Key.Item1, Minor = l.Key.Item2, Rate = l.Value })]);
        static List<T>? NullIfEmpty<T>(List<T> l) => l.Count > 0 ? l : null;
        var r = resources ?? new LinuxResources();
        var unified = r.Unified;
        return r with
        {
            BlockIo = (r.BlockIo ?? new LinuxBlockIo()) with
            {
                Weight = m.Weight ?? r.BlockIo?.Weight,
                WeightDevice = NullIfEmpty([.. m.WeightDevices.OrderBy(w => w.Key.Item1).ThenBy(w => w.Key.Item2)
                    .Select(w => new LinuxWeightDevice { Major = w.Key.Item1, Minor = w.Key.Item2, Weight = w.Value })]) ?? r.BlockIo?.WeightDevice,
                ThrottleReadBpsDevice = Of("rbps"),
                ThrottleWriteBpsDevice = Of("wbps"),
                ThrottleReadIopsDevice = Of("riops"),
                ThrottleWriteIopsDevice = Of("wiops"),
            },
            Unified = unified is null ? null
                : unified.Where(kv => kv.Key is not (UnifiedKey or UnifiedWeightKey)).ToDictionary() is { Count: > 0 } rest ? rest : null,
        };
    }

    private static void ApplyClass(SelectedBlockioClass blockio, Func<string, (long Major, long Minor)?> device,
        Func<string, IEnumerable<string>> expand, Merged m)
    {
        foreach (var rule in blockio.Class.Rules)
        {
            if (rule.Devices is null) { m.Weight = rule.Weight ?? m.Weight; continue; }
            foreach (var (major, minor) in rule.Devices.SelectMany(d => ClassDevices(d, blockio.Field, device, expand)).Distinct())
            {
                if (rule.Weight is { } w) m.SetWeight((major, minor), w, blockio.Field);
                if (rule.ReadBps is { } rbps) m.Throttles[(major, minor, "rbps")] = rbps;
                if (rule.WriteBps is { } wbps) m.Throttles[(major, minor, "wbps")] = wbps;
                if (rule.ReadIops is { } riops) m.Throttles[(major, minor, "riops")] = riops;
                if (rule.WriteIops is { } wiops) m.Throttles[(major, minor, "wiops")] = wiops;
            }
        }
    }

    /// <summary>A class's device: MAJ:MIN, rootfs, a path, or a pattern whose matches that are block
    /// devices count (a pattern matching none is no error: the class names disks a node may lack).</summary>
    private static IEnumerable<(long, long)> ClassDevices(string token, string field, Func<string, (long Major, long Minor)?> device,
        Func<string, IEnumerable<string>> expand)
    {
        if (token == "rootfs" || BlockDevices.IsMajorMinor(token) || Path.GetFileName(token).IndexOfAny(['*', '?', '[']) < 0) return [Device(token, field, device)];
        return [.. expand(token).Select(p => device(p)).OfType<(long, long)>()];
    }

    private static void Parse(string text, string field, Func<string, (long Major, long Minor)?> device, Merged m)
    {
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var (major, minor) = Device(parts[0], field, device);
            if (parts.Length == 1) throw Fail.InvalidArgument($"{field}: '{line}' names no limit (rbps=, wbps=, riops=, wiops=)");
            foreach (var kv in parts.Skip(1))
            {
                var eq = kv.IndexOf('=');
                var name = eq > 0 ? kv[..eq] : kv;
                if (name is not ("rbps" or "wbps" or "riops" or "wiops"))
                    throw Fail.InvalidArgument($"{field}: '{kv}' is not one of rbps=, wbps=, riops=, wiops=");
                var value = kv[(eq + 1)..];
                // "max" lifts the limit: 0 removes a v1 throttle rule.
                ulong rate = 0;
                if (value != "max" && !(ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out rate) && rate > 0))
                    throw Fail.InvalidArgument($"{field}: '{kv}': the value must be a positive integer or max");
                m.Throttles[(major, minor, name)] = rate;
            }
        }
    }

    /// <summary>io.weight lines: "default N", "N" or "DEVICE N", N in io.weight's range 1..10000,
    /// kept in the OCI (v1, BFQ) range 10..1000 by the inverse of the conversion the v2 manager
    /// (and runc) applies, so on cgroup v2 the kernel gets N back up to rounding.</summary>
    private static void ParseWeights(string text, string field, Func<string, (long Major, long Minor)?> device, Merged m)
    {
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 2) throw Fail.InvalidArgument($"{field}: '{line}' is not 'default N', 'N' or 'DEVICE N'");
            var value = parts[^1];
            if (!(uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 10000))
                throw Fail.InvalidArgument($"{field}: '{line}': the weight must be between 1 and 10000");
            var oci = OciWeight(n);
            if (parts.Length == 1 || parts[0] == "default") m.Weight = oci;
            else m.SetWeight(Device(parts[0], field, device), oci, field);
        }
    }

    /// <summary>io.weight (1..10000) on the OCI blockIO scale (10..1000).</summary>
    public static ushort OciWeight(uint ioWeight) => (ushort)(10 + Math.Round((ioWeight - 1) * 990.0 / 9999.0, MidpointRounding.AwayFromZero));

    private static (long, long) Device(string token, string field, Func<string, (long Major, long Minor)?> device)
    {
        // MAJ:MIN as given, unless the resolver knows better (a partition's disk).
        if (BlockDevices.ParseMajorMinor(token) is { } mm) return device(token) ?? mm;
        if (token == "rootfs")
            return device(token) ?? throw Fail.InvalidArgument($"{field}: device rootfs: the container has no disk quota (its own loop device) and the storage root is on no block device (overlay, tmpfs?)");
        if (token.StartsWith('/'))
            return device(token) ?? throw Fail.InvalidArgument($"{field}: {token} is not a block device");
        throw Fail.InvalidArgument($"{field}: '{token}' is not MAJ:MIN, a device path or rootfs");
    }
}
