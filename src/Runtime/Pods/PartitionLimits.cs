using System.Globalization;
using CriRuntime.Errors;

namespace CriRuntime.Pods;

/// <summary>Limits a hosting provider sets per pod that the CRI does not carry, by annotation
/// (docs/partition-view.md, "Limits the CRI does not carry"): the pod's processes (pids.max of the
/// pod cgroup), each container's open files (RLIMIT_NOFILE) and the size of /dev/shm. Every value
/// is checked at RunPodSandbox (and a container's own at CreateContainer); a bad one is
/// InvalidArgument naming the annotation.</summary>
public static class PartitionLimits
{
    public const string PidsAnnotation = "pids-limit.criruntime.io/pod";
    public const string ShmAnnotation = "shm-size.criruntime.io/pod";
    public const string NofileAnnotationPrefix = "nofile-limit.criruntime.io/container.";

    /// <summary>The smallest /dev/shm: one page.</summary>
    public const ulong MinShmBytes = 4096;

    /// <summary>/dev/shm without the annotation, as containerd and Docker give it.</summary>
    public const ulong DefaultShmBytes = 64UL << 20;

    /// <summary>pids.max for the pod cgroup; null without the annotation.</summary>
    public static long? PodPids(IReadOnlyDictionary<string, string> podAnnotations)
    {
        if (!podAnnotations.TryGetValue(PidsAnnotation, out var v)) return null;
        if (!long.TryParse(v.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1 || n > Config.RuntimeSection.MaxPidsLimit)
            throw Fail.InvalidArgument($"annotation {PidsAnnotation}: '{v}' is not a number of processes from 1 to {Config.RuntimeSection.MaxPidsLimit}");
        return n;
    }

    /// <summary>The size of each of the pod's containers' /dev/shm in bytes.</summary>
    public static ulong ShmBytes(IReadOnlyDictionary<string, string> podAnnotations)
    {
        if (!podAnnotations.TryGetValue(ShmAnnotation, out var v)) return DefaultShmBytes;
        if (!Storage.Quantity.TryParse(v, out var bytes) || bytes < MinShmBytes)
            throw Fail.InvalidArgument($"annotation {ShmAnnotation}: '{v}' is not a size of at least 4Ki (e.g. 256Mi, 1G)");
        return bytes;
    }

    /// <summary>RLIMIT_NOFILE of the container <paramref name="containerName"/>: its own annotation
    /// (on its config, else on the pod's); null for none (the runtime's limits are inherited).
    /// "N" sets soft and hard, "SOFT:HARD" each; neither may pass <paramref name="runtimeHard"/>,
    /// the runtime's own hard limit (raising it needs CAP_SYS_RESOURCE, which we lack), asked only
    /// when there is such an annotation (<see cref="RuntimeNofileHard"/> reads /proc).</summary>
    public static (ulong Soft, ulong Hard)? Nofile(string containerName, IReadOnlyDictionary<string, string> containerAnnotations,
        IReadOnlyDictionary<string, string> podAnnotations, Func<ulong> runtimeHard)
    {
        var key = NofileAnnotationPrefix + containerName;
        if (containerAnnotations.TryGetValue(key, out var own)) return ParseNofile(key, own, runtimeHard);
        if (podAnnotations.TryGetValue(key, out var fromPod)) return ParseNofile(key, fromPod, runtimeHard);
        return null;
    }

    /// <summary>Checks every annotation of a pod's config: its pids and shm limits and the open
    /// files of each container it names.</summary>
    public static void ValidatePod(IReadOnlyDictionary<string, string> podAnnotations, Func<ulong> runtimeHard)
    {
        PodPids(podAnnotations);
        ShmBytes(podAnnotations);
        foreach (var (key, value) in podAnnotations)
        {
            if (!key.StartsWith(NofileAnnotationPrefix, StringComparison.Ordinal)) continue;
            if (key.Length == NofileAnnotationPrefix.Length) throw Fail.InvalidArgument($"annotation {key}: names no container");
            ParseNofile(key, value, runtimeHard);
        }
    }

    internal static (ulong Soft, ulong Hard) ParseNofile(string key, string value, Func<ulong> runtimeHard)
    {
        var parts = value.Trim().Split(':');
        if (parts.Length > 2 || !parts.All(p => ulong.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            throw Fail.InvalidArgument($"annotation {key}: '{value}' is not N or SOFT:HARD (numbers of open files)");
        var soft = ulong.Parse(parts[0], CultureInfo.InvariantCulture);
        var hard = ulong.Parse(parts[^1], CultureInfo.InvariantCulture);
        if (soft < 1 || soft > hard) throw Fail.InvalidArgument($"annotation {key}: '{value}': the soft limit must be from 1 to the hard limit");
        var limit = runtimeHard();
        if (hard > limit)
            throw Fail.InvalidArgument($"annotation {key}: '{value}' passes the runtime's own hard limit of open files, {limit} (raising it needs CAP_SYS_RESOURCE)");
        return (soft, hard);
    }

    /// <summary>The hard RLIMIT_NOFILE of this process, from /proc/self/limits.</summary>
    public static ulong RuntimeNofileHard() => ParseLimitsHard(File.ReadAllText("/proc/self/limits"), "Max open files");

    /// <summary>The hard column of a /proc/PID/limits row ("Max open files  1024  524288  files");
    /// "unlimited" is <see cref="ulong.MaxValue"/>.</summary>
    internal static ulong ParseLimitsHard(string limits, string row)
    {
        foreach (var line in limits.Split('\n'))
        {
            if (!line.StartsWith(row, StringComparison.Ordinal)) continue;
            var fields = line[row.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 2)
                return fields[1] == "unlimited" ? ulong.MaxValue : ulong.Parse(fields[1], CultureInfo.InvariantCulture);
        }
        throw new FormatException($"/proc/self/limits: no '{row}' row");
    }
}
