using System.Globalization;
using CriRuntime.Errors;
using CriRuntime.Oci;

namespace CriRuntime.Storage;

/// <summary>I/O rate limits in io.max's syntax ("DEVICE rbps=N wbps=N riops=N wiops=N", one device
/// a line), from the CRI <c>unified</c> map's <c>io.max</c> and then the pod annotation
/// <c>io-limit.criruntime.io/container.NAME</c> (later wins per device and key), turned into the
/// OCI blockIO throttles the cgroup managers write: <c>blkio.throttle.*</c> on v1 and hybrid
/// hosts, io.max on v2. DEVICE is MAJ:MIN, a device path, or <c>rootfs</c>: the container's own
/// loop device when it has a disk-quota volume (exact per-container limits).</summary>
public static class IoLimits
{
    public const string UnifiedKey = "io.max";
    public const string PodAnnotationPrefix = "io-limit.criruntime.io/container.";

    /// <summary><paramref name="resources"/> with io.max moved out of unified into blockIO
    /// throttles. <paramref name="device"/> answers a device path's (or "rootfs"'s) major:minor,
    /// or null when there is none. InvalidArgument names the key or annotation.</summary>
    public static LinuxResources? Apply(LinuxResources? resources, string unifiedField, string containerName,
        IReadOnlyDictionary<string, string> podAnnotations, Func<string, (long Major, long Minor)?> device)
    {
        var limits = new Dictionary<(long, long, string), ulong>();
        var unified = resources?.Unified;
        if (unified is not null && unified.TryGetValue(UnifiedKey, out var fromUnified))
            Parse(fromUnified, $"{unifiedField}[{UnifiedKey}]", device, limits);
        var key = PodAnnotationPrefix + containerName;
        if (podAnnotations.TryGetValue(key, out var fromPod))
            Parse(fromPod, $"annotation {key}", device, limits);
        if (limits.Count == 0) return resources;

        List<LinuxThrottleDevice> Of(string kind) =>
            [.. limits.Where(l => l.Key.Item3 == kind).Select(l => new LinuxThrottleDevice { Major = l.Key.Item1, Minor = l.Key.Item2, Rate = l.Value })];
        static List<LinuxThrottleDevice>? NullIfEmpty(List<LinuxThrottleDevice> l) => l.Count > 0 ? l : null;
        var r = resources ?? new LinuxResources();
        return r with
        {
            BlockIo = (r.BlockIo ?? new LinuxBlockIo()) with
            {
                ThrottleReadBpsDevice = NullIfEmpty(Of("rbps")),
                ThrottleWriteBpsDevice = NullIfEmpty(Of("wbps")),
                ThrottleReadIopsDevice = NullIfEmpty(Of("riops")),
                ThrottleWriteIopsDevice = NullIfEmpty(Of("wiops")),
            },
            Unified = unified is null ? null : unified.Where(kv => kv.Key != UnifiedKey).ToDictionary() is { Count: > 0 } rest ? rest : null,
        };
    }

    private static void Parse(string text, string field, Func<string, (long Major, long Minor)?> device, Dictionary<(long, long, string), ulong> limits)
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
                limits[(major, minor, name)] = rate;
            }
        }
    }

    private static (long, long) Device(string token, string field, Func<string, (long Major, long Minor)?> device)
    {
        var colon = token.IndexOf(':');
        if (colon > 0 && long.TryParse(token[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            && long.TryParse(token[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
            return (major, minor);
        if (token == "rootfs")
            return device(token) ?? throw Fail.InvalidArgument($"{field}: device rootfs needs a disk quota on the container (its own loop device)");
        if (token.StartsWith('/'))
            return device(token) ?? throw Fail.InvalidArgument($"{field}: {token} is not a block device");
        throw Fail.InvalidArgument($"{field}: '{token}' is not MAJ:MIN, a device path or rootfs");
    }
}
