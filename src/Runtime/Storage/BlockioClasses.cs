using System.Text;
using CriRuntime.Errors;

namespace CriRuntime.Storage;

/// <summary>One item of a class: a weight and throttles for the devices listed, or, without
/// Devices, the class's default weight. Devices are paths (shell wildcards in the last name,
/// symlinks followed), MAJ:MIN, or <c>rootfs</c>; they are resolved when a container is made,
/// so a disk that appears later is found.</summary>
public sealed record BlockioRule
{
    public IReadOnlyList<string>? Devices { get; init; }
    public ushort? Weight { get; init; }
    public ulong? ReadBps { get; init; }
    public ulong? WriteBps { get; init; }
    public ulong? ReadIops { get; init; }
    public ulong? WriteIops { get; init; }
}

public sealed record BlockioClass(string Name, IReadOnlyList<BlockioRule> Rules);

/// <summary>Block I/O classes in the file format goresctrl reads for containerd and CRI-O
/// (<c>[storage] blockio_config_file</c>):
/// <code>
/// Classes:
///   slow:
///     - Weight: 80                 # default weight of the class (10..1000)
///     - Devices: [/dev/vd*, rootfs]
///       ThrottleWriteBps: 2Mi      # quantities: 10k, 50M, 2Mi, plain numbers
///       ThrottleReadIOPS: 1k
///       Weight: 50                 # weight on these devices
/// </code>
/// Later items win per device and key. A container selects a class with its annotation
/// <c>io.kubernetes.cri.blockio-class</c>, else the pod's
/// <c>blockio.resources.beta.kubernetes.io/container.NAME</c>, else the pod's
/// <c>blockio.resources.beta.kubernetes.io/pod</c> (goresctrl's precedence).</summary>
public sealed class BlockioClasses
{
    public const string ContainerAnnotation = "io.kubernetes.cri.blockio-class";
    public const string PodContainerAnnotationPrefix = "blockio.resources.beta.kubernetes.io/container.";
    public const string PodAnnotation = "blockio.resources.beta.kubernetes.io/pod";

    public static readonly BlockioClasses None = new("", new Dictionary<string, BlockioClass>());

    /// <summary>The file the classes came from ("" for none), named in errors.</summary>
    public string Source { get; }
    public IReadOnlyDictionary<string, BlockioClass> Classes { get; }

    private BlockioClasses(string source, IReadOnlyDictionary<string, BlockioClass> classes) => (Source, Classes) = (source, classes);

    /// <summary>Reads a class file. FormatException names the line or the class and key.</summary>
    public static BlockioClasses Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new FormatException($"cannot read: {e.Message}", e); }
        return Parse(text, path);
    }

    public static BlockioClasses Parse(string text, string source)
    {
        var root = YamlSubset.Parse(text);
        var classes = new Dictionary<string, BlockioClass>(StringComparer.Ordinal);
        if (root is null or YamlScalar { Value: null }) return new(source, classes);
        if (root is not YamlMapping top) throw new FormatException($"line {root.Line}: expected a mapping with the key Classes");
        foreach (var (key, value) in top.Entries)
        {
            if (key != "Classes") throw new FormatException($"line {value.Line}: unknown key '{key}' (expected Classes)");
            if (value is YamlScalar { Value: null }) continue;
            if (value is not YamlMapping named) throw new FormatException($"line {value.Line}: Classes must map class names to lists");
            foreach (var (name, items) in named.Entries)
                classes[name] = new BlockioClass(name, Rules(name, items));
        }
        return new(source, classes);
    }

    private static List<BlockioRule> Rules(string name, YamlNode items)
    {
        if (items is YamlScalar { Value: null }) return [];
        if (items is not YamlSequence list) throw new FormatException($"class {name} (line {items.Line}): expected a list of items (- Weight: ..., - Devices: ...)");
        var rules = new List<BlockioRule>();
        foreach (var item in list.Items)
        {
            if (item is not YamlMapping m) throw new FormatException($"class {name} (line {item.Line}): each item must be a mapping");
            var rule = new BlockioRule();
            foreach (var (key, value) in m.Entries)
            {
                var field = $"class {name}: {key} (line {value.Line})";
                rule = key switch
                {
                    "Devices" => rule with { Devices = DeviceList(value, field) },
                    "Weight" => rule with { Weight = Weight(Text(value, field), field) },
                    "ThrottleReadBps" => rule with { ReadBps = Rate(Text(value, field), field) },
                    "ThrottleWriteBps" => rule with { WriteBps = Rate(Text(value, field), field) },
                    "ThrottleReadIOPS" => rule with { ReadIops = Rate(Text(value, field), field) },
                    "ThrottleWriteIOPS" => rule with { WriteIops = Rate(Text(value, field), field) },
                    _ => throw new FormatException($"{field}: unknown key (Devices, Weight, ThrottleReadBps, ThrottleWriteBps, ThrottleReadIOPS, ThrottleWriteIOPS)"),
                };
            }
            if (rule.Devices is null && (rule.ReadBps ?? rule.WriteBps ?? rule.ReadIops ?? rule.WriteIops) is not null)
                throw new FormatException($"class {name} (line {m.Line}): throttles need a Devices list");
            rules.Add(rule);
        }
        return rules;
    }

    private static string Text(YamlNode node, string field) =>
        node is YamlScalar { Value: { } v } ? v : throw new FormatException($"{field}: expected a value");

    private static List<string> DeviceList(YamlNode node, string field)
    {
        var items = node is YamlSequence s ? s.Items : node is YamlScalar { Value: not null } ? [node] : throw new FormatException($"{field}: expected a list of devices");
        var devices = items.Select(i => Text(i, field)).ToList();
        foreach (var d in devices)
            if (d != "rootfs" && !d.StartsWith('/') && !BlockDevices.IsMajorMinor(d))
                throw new FormatException($"{field}: '{d}' is not a device path, MAJ:MIN or rootfs");
        return devices;
    }

    internal static ushort Weight(string text, string field) =>
        ushort.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var w) && w is >= 10 and <= 1000
            ? w : throw new FormatException($"{field}: '{text}' must be a weight between 10 and 1000");

    /// <summary>A quantity as Kubernetes writes it (10k, 50M, 2Mi); 0 means no limit.</summary>
    private static ulong Rate(string text, string field) =>
        Quantity.TryParse(text, out var v) ? v : throw new FormatException($"{field}: '{text}' is not a quantity like 10k, 50M or 2Mi");

    /// <summary>The container's class and the annotation that chose it, or null when none does.</summary>
    public static (string Name, string Annotation)? Selected(string containerName,
        IReadOnlyDictionary<string, string> containerAnnotations, IReadOnlyDictionary<string, string> podAnnotations)
    {
        if (containerAnnotations.TryGetValue(ContainerAnnotation, out var c)) return (c, ContainerAnnotation);
        var key = PodContainerAnnotationPrefix + containerName;
        if (podAnnotations.TryGetValue(key, out var pc)) return (pc, key);
        if (podAnnotations.TryGetValue(PodAnnotation, out var p)) return (p, PodAnnotation);
        return null;
    }

    /// <summary>The class a container's annotations select, or null for none; an unknown class is
    /// InvalidArgument naming the annotation.</summary>
    public SelectedBlockioClass? For(string containerName, IReadOnlyDictionary<string, string> containerAnnotations, IReadOnlyDictionary<string, string> podAnnotations)
    {
        if (Selected(containerName, containerAnnotations, podAnnotations) is not { } chosen) return null;
        if (Source.Length == 0)
            throw Fail.InvalidArgument($"annotation {chosen.Annotation}: blockio class '{chosen.Name}' asked for, but no [storage] blockio_config_file is set");
        return Classes.TryGetValue(chosen.Name, out var cls) ? new SelectedBlockioClass(cls, chosen.Annotation, Source)
            : throw Fail.InvalidArgument($"annotation {chosen.Annotation}: no blockio class '{chosen.Name}' in {Source} (classes: {string.Join(", ", Classes.Keys.Order(StringComparer.Ordinal))})");
    }

    /// <summary>A stable text of the classes, so a reload sees a changed file as a changed key.</summary>
    public string Fingerprint()
    {
        var sb = new StringBuilder(Source);
        foreach (var cls in Classes.Values.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            sb.Append(';').Append(cls.Name).Append('=');
            foreach (var r in cls.Rules)
                sb.Append('[').Append(string.Join(",", r.Devices ?? [])).Append(' ').Append(r.Weight).Append(' ').Append(r.ReadBps).Append(' ')
                    .Append(r.WriteBps).Append(' ').Append(r.ReadIops).Append(' ').Append(r.WriteIops).Append(']');
        }
        return sb.ToString();
    }
}
