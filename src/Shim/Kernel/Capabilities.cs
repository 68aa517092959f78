namespace CriRuntime.Shim.Kernel;

/// <summary>Capability names as the OCI spec writes them ("CAP_NET_BIND_SERVICE") to bit numbers
/// (linux/capability.h). Unknown names are an error rather than silently ignored: a typo in a
/// spec must not quietly give a container fewer or more privileges than asked.</summary>
public static class Capabilities
{
    private static readonly string[] ByNumber = Oci.CapabilityNames.ByNumber;

    public static int Last => ByNumber.Length - 1;

    public static int Number(string name)
    {
        var i = Array.IndexOf(ByNumber, name.ToUpperInvariant());
        if (i < 0) throw new InvalidDataException($"process.capabilities: unknown capability \"{name}\"");
        return i;
    }

    public static string Name(int number) => ByNumber[number];

    public static ulong Mask(IEnumerable<string>? names)
    {
        ulong mask = 0;
        if (names is null) return 0;
        foreach (var n in names) mask |= 1UL << Number(n);
        return mask;
    }

    /// <summary>This process's bounding set (CapBnd of /proc/self/status): the most a container
    /// it starts can have.</summary>
    public static ulong HeldBounding() => Oci.CapabilityNames.BoundingMask(File.ReadAllText("/proc/self/status"));

    /// <summary>The names of the capabilities in <paramref name="mask"/>, comma-separated.</summary>
    public static string Names(ulong mask) =>
        string.Join(", ", Enumerable.Range(0, 64).Where(b => (mask & (1UL << b)) != 0).Select(b => b < ByNumber.Length ? ByNumber[b] : $"capability {b}"));

    /// <summary>The highest capability the running kernel knows (/proc/sys/kernel/cap_last_cap),
    /// so PR_CAPBSET_DROP is not asked about capabilities it has never heard of.</summary>
    public static int KernelLast()
    {
        try { return int.Parse(File.ReadAllText("/proc/sys/kernel/cap_last_cap").Trim()); }
        catch (IOException) { return Last; }
    }
}
