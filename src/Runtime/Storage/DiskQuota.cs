using System.Globalization;
using CriRuntime.Errors;

namespace CriRuntime.Storage;

/// <summary>How large a container's writable layer may grow: the container's own annotation
/// (on its config, else on the pod's), else the node default (<c>[storage] rootfs_quota</c>).
/// 0 means no quota. Sizes are Kubernetes quantities ("512Mi", "1G", "1048576").</summary>
public static class DiskQuota
{
    public const string PodAnnotation = "disk-quota.criruntime.io/pod";
    public const string ContainerAnnotationPrefix = "disk-quota.criruntime.io/container.";
    /// <summary>The smallest volume: an ext4 of a few block groups' metadata plus room to write.</summary>
    public const ulong MinimumBytes = 16UL << 20;

    /// <summary>The container's quota in bytes, 0 for none. InvalidArgument names the annotation.</summary>
    public static ulong ForContainer(ulong nodeDefault, string containerName,
        IReadOnlyDictionary<string, string> containerAnnotations, IReadOnlyDictionary<string, string> podAnnotations)
    {
        var key = ContainerAnnotationPrefix + containerName;
        if (containerAnnotations.TryGetValue(key, out var own)) return Annotation(key, own);
        if (podAnnotations.TryGetValue(key, out var fromPod)) return Annotation(key, fromPod);
        return nodeDefault;
    }

    /// <summary>The pod's total over its containers' writable layers in bytes, 0 for none.</summary>
    public static ulong ForPod(IReadOnlyDictionary<string, string> podAnnotations) =>
        podAnnotations.TryGetValue(PodAnnotation, out var v) ? Annotation(PodAnnotation, v) : 0;

    private static ulong Annotation(string key, string value)
    {
        if (!Quantity.TryParse(value, out var bytes))
            throw Fail.InvalidArgument($"annotation {key}: '{value}' is not a size (e.g. 512Mi, 1G, 1048576)");
        if (bytes != 0 && bytes < MinimumBytes)
            throw Fail.InvalidArgument($"annotation {key}: {value} is below the smallest quota, 16Mi");
        return bytes;
    }
}

/// <summary>Kubernetes resource quantities as byte counts: an integer or decimal number with an
/// optional binary (Ki, Mi, Gi, Ti, Pi, Ei) or decimal (k, M, G, T, P, E) suffix.</summary>
public static class Quantity
{
    private static readonly (string Suffix, decimal Factor)[] Suffixes =
    [
        ("Ki", 1L << 10), ("Mi", 1L << 20), ("Gi", 1L << 30), ("Ti", 1L << 40), ("Pi", 1L << 50), ("Ei", 1L << 60),
        ("k", 1e3m), ("M", 1e6m), ("G", 1e9m), ("T", 1e12m), ("P", 1e15m), ("E", 1e18m),
    ];

    public static bool TryParse(string text, out ulong bytes)
    {
        bytes = 0;
        var s = text.Trim();
        decimal factor = 1;
        foreach (var (suffix, f) in Suffixes)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal))
            {
                s = s[..^suffix.Length];
                factor = f;
                break;
            }
        }
        if (s.Length == 0 || !s.All(ch => char.IsAsciiDigit(ch) || ch == '.')) return false;
        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n)) return false;
        try
        {
            var value = decimal.Ceiling(n * factor);
            if (value > ulong.MaxValue) return false;
            bytes = (ulong)value;
            return true;
        }
        catch (OverflowException) { return false; }
    }
}
