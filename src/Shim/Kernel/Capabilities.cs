namespace CriRuntime.Shim.Kernel;

/// <summary>Capability names as the OCI spec writes them ("CAP_NET_BIND_SERVICE") to bit numbers
/// (linux/capability.h). Unknown names are an error rather than silently ignored: a typo in a
/// spec must not quietly give a container fewer or more privileges than asked.</summary>
public static class Capabilities
{
    private static readonly string[] ByNumber =
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
    public static ulong HeldBounding()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("CapBnd:", StringComparison.Ordinal))
                return ulong.Parse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);
        throw new InvalidDataException("/proc/self/status: no CapBnd line");
    }

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
