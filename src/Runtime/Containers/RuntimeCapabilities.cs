using System.Globalization;

namespace CriRuntime.Containers;

/// <summary>The capabilities this runtime holds: its bounding set, read once from
/// /proc/self/status (CapBnd). A privileged container or add_capabilities ALL gets exactly these,
/// as containerd does (pkg/cap Current): a host, or a runtime in a container, may lack some, and
/// asking the kernel for a capability outside the bounding set fails the container's start.</summary>
public static class RuntimeCapabilities
{
    private static readonly Lazy<IReadOnlyList<string>> Self = new(() => Parse(File.ReadAllText("/proc/self/status")));

    /// <summary>This process's bounding set, by name (CAP_*), in capability number order.</summary>
    public static IReadOnlyList<string> Bounding => Self.Value;

    /// <summary>Pure: the CapBnd line of a /proc/PID/status text as names. Bits this runtime has
    /// no name for (capabilities newer than it) are left out: the spec cannot name them.</summary>
    public static IReadOnlyList<string> Parse(string status)
    {
        foreach (var line in status.AsSpan().EnumerateLines())
        {
            if (!line.StartsWith("CapBnd:", StringComparison.Ordinal)) continue;
            var mask = ulong.Parse(line["CapBnd:".Length..].Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
            return FromMask(mask);
        }
        throw new InvalidDataException("/proc/self/status: no CapBnd line");
    }

    public static IReadOnlyList<string> FromMask(ulong mask)
    {
        var names = new List<string>();
        for (var bit = 0; bit < SpecBuilder.AllCapabilities.Length; bit++)
            if ((mask & (1UL << bit)) != 0) names.Add(SpecBuilder.AllCapabilities[bit]);
        return names;
    }
}
