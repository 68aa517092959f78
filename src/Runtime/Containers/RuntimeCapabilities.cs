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

    /// <summary>Pure: the CapBnd line of a /proc/PID/status text as names.</summary>
    public static IReadOnlyList<string> Parse(string status) => Oci.CapabilityNames.FromMask(Oci.CapabilityNames.BoundingMask(status));

    public static IReadOnlyList<string> FromMask(ulong mask) => Oci.CapabilityNames.FromMask(mask);
}
