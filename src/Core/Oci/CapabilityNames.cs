using System.Globalization;

namespace CriRuntime.Oci;

/// <summary>Linux capabilities as the OCI spec names them ("CAP_NET_BIND_SERVICE"), by bit number
/// (linux/capability.h), and the bounding set of a process: one table for the daemon, which
/// decides a container's capabilities, and the shim, which applies them.</summary>
public static class CapabilityNames
{
    /// <summary>Every capability this runtime knows, index = capability number.</summary>
    public static readonly string[] ByNumber =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
        "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];

    /// <summary>The CapBnd mask of a /proc/PID/status text.</summary>
    public static ulong BoundingMask(string status)
    {
        foreach (var line in status.AsSpan().EnumerateLines())
            if (line.StartsWith("CapBnd:", StringComparison.Ordinal))
                return ulong.Parse(line["CapBnd:".Length..].Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        throw new InvalidDataException("/proc/self/status: no CapBnd line");
    }

    /// <summary>The names of the capabilities in <paramref name="mask"/>, in number order. Bits
    /// this runtime has no name for (capabilities newer than it) are left out: a spec cannot
    /// name them.</summary>
    public static IReadOnlyList<string> FromMask(ulong mask)
    {
        var names = new List<string>();
        for (var bit = 0; bit < ByNumber.Length; bit++)
            if ((mask & (1UL << bit)) != 0) names.Add(ByNumber[bit]);
        return names;
    }
}
