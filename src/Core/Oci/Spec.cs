using System.Text.Json.Serialization;

namespace CriRuntime.Oci;

// The OCI runtime-spec config.json (runtime-spec v1.2, config.md and config-linux.md): only the
// parts a Linux container runtime acts on. Property names are the spec's JSON names; where plain
// camelCase would differ from the spec (containerID, disableOOMKiller, blockIO, ...) the name is
// spelled out. These files are shared with the daemon, which generates the spec: keep them free
// of anything shim-specific.

public sealed record Spec
{
    public string OciVersion { get; init; } = "1.2.0";
    public Process? Process { get; init; }
    public Root? Root { get; init; }
    public string? Hostname { get; init; }
    public string? Domainname { get; init; }
    public IReadOnlyList<Mount>? Mounts { get; init; }
    public IReadOnlyDictionary<string, string>? Annotations { get; init; }
    public Linux? Linux { get; init; }
}

public sealed record Root
{
    public string Path { get; init; } = "rootfs";
    [JsonPropertyName("readonly")] public bool Readonly { get; init; }
}

public sealed record Mount
{
    public string Destination { get; init; } = "";
    public string? Type { get; init; }
    public string? Source { get; init; }
    public IReadOnlyList<string>? Options { get; init; }
}

public sealed record Process
{
    public bool Terminal { get; init; }
    public Box? ConsoleSize { get; init; }
    public User User { get; init; } = new();
    public IReadOnlyList<string> Args { get; init; } = [];
    public IReadOnlyList<string>? Env { get; init; }
    public string Cwd { get; init; } = "/";
    public LinuxCapabilities? Capabilities { get; init; }
    public IReadOnlyList<Rlimit>? Rlimits { get; init; }
    public bool NoNewPrivileges { get; init; }
    public string? ApparmorProfile { get; init; }
    public int? OomScoreAdj { get; init; }
    public string? SelinuxLabel { get; init; }
}

public sealed record Box
{
    public uint Height { get; init; }
    public uint Width { get; init; }
}

public sealed record User
{
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public uint? Umask { get; init; }
    public IReadOnlyList<uint>? AdditionalGids { get; init; }
    public string? Username { get; init; }
}

public sealed record LinuxCapabilities
{
    public IReadOnlyList<string>? Bounding { get; init; }
    public IReadOnlyList<string>? Effective { get; init; }
    public IReadOnlyList<string>? Inheritable { get; init; }
    public IReadOnlyList<string>? Permitted { get; init; }
    public IReadOnlyList<string>? Ambient { get; init; }
}

public sealed record Rlimit
{
    /// <summary>"RLIMIT_NOFILE" etc.</summary>
    public string Type { get; init; } = "";
    public ulong Hard { get; init; }
    public ulong Soft { get; init; }
}

public sealed record Linux
{
    public IReadOnlyList<LinuxNamespace>? Namespaces { get; init; }
    public IReadOnlyList<IdMapping>? UidMappings { get; init; }
    public IReadOnlyList<IdMapping>? GidMappings { get; init; }
    public IReadOnlyList<LinuxDevice>? Devices { get; init; }
    public string? CgroupsPath { get; init; }
    public LinuxResources? Resources { get; init; }
    public IReadOnlyDictionary<string, string>? Sysctl { get; init; }
    public LinuxSeccomp? Seccomp { get; init; }
    /// <summary>"private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable".</summary>
    public string? RootfsPropagation { get; init; }
    public IReadOnlyList<string>? MaskedPaths { get; init; }
    public IReadOnlyList<string>? ReadonlyPaths { get; init; }
    public string? MountLabel { get; init; }
}

public sealed record LinuxNamespace
{
    /// <summary>"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time".</summary>
    public string Type { get; init; } = "";
    /// <summary>Join this existing namespace (e.g. the pod's pinned netns) instead of creating one.</summary>
    public string? Path { get; init; }
}

public sealed record IdMapping
{
    [JsonPropertyName("containerID")] public uint ContainerId { get; init; }
    [JsonPropertyName("hostID")] public uint HostId { get; init; }
    public uint Size { get; init; }
}

public sealed record LinuxDevice
{
    /// <summary>"c", "b", "u" or "p".</summary>
    public string Type { get; init; } = "c";
    public string Path { get; init; } = "";
    public long Major { get; init; }
    public long Minor { get; init; }
    public uint? FileMode { get; init; }
    public uint? Uid { get; init; }
    public uint? Gid { get; init; }
}

public sealed record LinuxResources
{
    public IReadOnlyList<LinuxDeviceCgroup>? Devices { get; init; }
    public LinuxMemory? Memory { get; init; }
    public LinuxCpu? Cpu { get; init; }
    public LinuxPids? Pids { get; init; }
    [JsonPropertyName("blockIO")] public LinuxBlockIo? BlockIo { get; init; }
    public IReadOnlyList<LinuxHugepageLimit>? HugepageLimits { get; init; }
    public LinuxNetwork? Network { get; init; }
    public IReadOnlyDictionary<string, string>? Unified { get; init; }
}

public sealed record LinuxDeviceCgroup
{
    public bool Allow { get; init; }
    public string? Type { get; init; }
    public long? Major { get; init; }
    public long? Minor { get; init; }
    public string? Access { get; init; }
}

public sealed record LinuxMemory
{
    public long? Limit { get; init; }
    public long? Reservation { get; init; }
    public long? Swap { get; init; }
    public long? Kernel { get; init; }
    [JsonPropertyName("kernelTCP")] public long? KernelTcp { get; init; }
    public ulong? Swappiness { get; init; }
    [JsonPropertyName("disableOOMKiller")] public bool? DisableOomKiller { get; init; }
    public bool? UseHierarchy { get; init; }
}

public sealed record LinuxCpu
{
    public ulong? Shares { get; init; }
    public long? Quota { get; init; }
    public ulong? Period { get; init; }
    public long? RealtimeRuntime { get; init; }
    public ulong? RealtimePeriod { get; init; }
    public string? Cpus { get; init; }
    public string? Mems { get; init; }
    public long? Idle { get; init; }
}

public sealed record LinuxPids
{
    public long Limit { get; init; }
}

public sealed record LinuxBlockIo
{
    public ushort? Weight { get; init; }
    public ushort? LeafWeight { get; init; }
    public IReadOnlyList<LinuxWeightDevice>? WeightDevice { get; init; }
    public IReadOnlyList<LinuxThrottleDevice>? ThrottleReadBpsDevice { get; init; }
    public IReadOnlyList<LinuxThrottleDevice>? ThrottleWriteBpsDevice { get; init; }
    [JsonPropertyName("throttleReadIOPSDevice")] public IReadOnlyList<LinuxThrottleDevice>? ThrottleReadIopsDevice { get; init; }
    [JsonPropertyName("throttleWriteIOPSDevice")] public IReadOnlyList<LinuxThrottleDevice>? ThrottleWriteIopsDevice { get; init; }
}

public sealed record LinuxWeightDevice
{
    public long Major { get; init; }
    public long Minor { get; init; }
    public ushort? Weight { get; init; }
    public ushort? LeafWeight { get; init; }
}

public sealed record LinuxThrottleDevice
{
    public long Major { get; init; }
    public long Minor { get; init; }
    public ulong Rate { get; init; }
}

public sealed record LinuxHugepageLimit
{
    public string PageSize { get; init; } = "";
    public ulong Limit { get; init; }
}

public sealed record LinuxNetwork
{
    [JsonPropertyName("classID")] public uint? ClassId { get; init; }
    public IReadOnlyList<LinuxInterfacePriority>? Priorities { get; init; }
}

public sealed record LinuxInterfacePriority
{
    public string Name { get; init; } = "";
    public uint Priority { get; init; }
}

public sealed record LinuxSeccomp
{
    /// <summary>"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", ...</summary>
    public string DefaultAction { get; init; } = "SCMP_ACT_ALLOW";
    public uint? DefaultErrnoRet { get; init; }
    /// <summary>"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", ...</summary>
    public IReadOnlyList<string>? Architectures { get; init; }
    public IReadOnlyList<string>? Flags { get; init; }
    public IReadOnlyList<LinuxSyscall>? Syscalls { get; init; }
}

public sealed record LinuxSyscall
{
    public IReadOnlyList<string> Names { get; init; } = [];
    public string Action { get; init; } = "SCMP_ACT_ALLOW";
    public uint? ErrnoRet { get; init; }
    public IReadOnlyList<LinuxSeccompArg>? Args { get; init; }
}

public sealed record LinuxSeccompArg
{
    public uint Index { get; init; }
    public ulong Value { get; init; }
    public ulong ValueTwo { get; init; }
    /// <summary>"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ".</summary>
    public string Op { get; init; } = "SCMP_CMP_EQ";
}
