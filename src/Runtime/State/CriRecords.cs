using CriRuntime.Cri.V1;

namespace CriRuntime.State;

// Typed copies of the CRI messages a record keeps as decided (mounts, resources in force,
// namespace modes): stored as JSON fields, read without parsing the kubelet's request again, and
// turned back into CRI messages only where a status reports them.

/// <summary>A mount as the kubelet declared it at creation (ContainerStatus.mounts).</summary>
public sealed record MountRecord(
    string ContainerPath,
    string HostPath,
    bool Readonly,
    bool SelinuxRelabel,
    MountPropagation Propagation,
    IReadOnlyList<IdMappingRecord> UidMappings,
    IReadOnlyList<IdMappingRecord> GidMappings,
    bool RecursiveReadOnly,
    string Image,
    string ImageSubPath,
    IReadOnlyList<string> MountOptions)
{
    public static MountRecord From(Mount m) => new(m.ContainerPath, m.HostPath, m.Readonly, m.SelinuxRelabel, m.Propagation,
        [.. m.UidMappings.Select(IdMappingRecord.From)], [.. m.GidMappings.Select(IdMappingRecord.From)], m.RecursiveReadOnly,
        m.Image?.Image ?? "", m.ImageSubPath, [.. m.MountOptions]);

    public Mount ToCri()
    {
        var m = new Mount
        {
            ContainerPath = ContainerPath,
            HostPath = HostPath,
            Readonly = Readonly,
            SelinuxRelabel = SelinuxRelabel,
            Propagation = Propagation,
            RecursiveReadOnly = RecursiveReadOnly,
            ImageSubPath = ImageSubPath,
        };
        m.UidMappings.AddRange(UidMappings.Select(u => u.ToCri()));
        m.GidMappings.AddRange(GidMappings.Select(g => g.ToCri()));
        m.MountOptions.AddRange(MountOptions);
        if (Image.Length > 0) m.Image = new ImageSpec { Image = Image };
        return m;
    }
}

public sealed record IdMappingRecord(uint HostId, uint ContainerId, uint Length)
{
    public static IdMappingRecord From(IDMapping m) => new(m.HostId, m.ContainerId, m.Length);
    public IDMapping ToCri() => new() { HostId = HostId, ContainerId = ContainerId, Length = Length };
}

/// <summary>CRI LinuxContainerResources as in force: set at creation, replaced by each
/// UpdateContainerResources / UpdatePodSandboxResources that succeeded.</summary>
public sealed record ResourcesRecord(
    long CpuPeriod,
    long CpuQuota,
    long CpuShares,
    long MemoryLimitInBytes,
    long OomScoreAdj,
    string CpusetCpus,
    string CpusetMems,
    IReadOnlyList<HugepageLimitRecord> HugepageLimits,
    IReadOnlyDictionary<string, string> Unified,
    long MemorySwapLimitInBytes)
{
    public static ResourcesRecord? From(LinuxContainerResources? r) => r is null ? null : new(
        r.CpuPeriod, r.CpuQuota, r.CpuShares, r.MemoryLimitInBytes, r.OomScoreAdj, r.CpusetCpus, r.CpusetMems,
        [.. r.HugepageLimits.Select(h => new HugepageLimitRecord(h.PageSize, h.Limit))],
        new Dictionary<string, string>(r.Unified), r.MemorySwapLimitInBytes);

    public LinuxContainerResources ToCri()
    {
        var r = new LinuxContainerResources
        {
            CpuPeriod = CpuPeriod,
            CpuQuota = CpuQuota,
            CpuShares = CpuShares,
            MemoryLimitInBytes = MemoryLimitInBytes,
            OomScoreAdj = OomScoreAdj,
            CpusetCpus = CpusetCpus,
            CpusetMems = CpusetMems,
            MemorySwapLimitInBytes = MemorySwapLimitInBytes,
        };
        r.HugepageLimits.AddRange(HugepageLimits.Select(h => new HugepageLimit { PageSize = h.PageSize, Limit = h.Limit }));
        foreach (var (k, v) in Unified) r.Unified[k] = v;
        return r;
    }
}

public sealed record HugepageLimitRecord(string PageSize, ulong Limit);

/// <summary>The pod's namespace modes as the kubelet asked for them (PodSandboxStatus reports
/// them back); where each namespace is pinned is in the record's own fields.</summary>
public sealed record NamespaceModesRecord(
    NamespaceMode Network,
    NamespaceMode Pid,
    NamespaceMode Ipc,
    string TargetId,
    NamespaceMode? Userns,
    IReadOnlyList<IdMappingRecord> UsernsUids,
    IReadOnlyList<IdMappingRecord> UsernsGids)
{
    public static NamespaceModesRecord From(NamespaceOption? o)
    {
        o ??= new NamespaceOption();
        return new(o.Network, o.Pid, o.Ipc, o.TargetId, o.UsernsOptions?.Mode,
            [.. o.UsernsOptions?.Uids.Select(IdMappingRecord.From) ?? []], [.. o.UsernsOptions?.Gids.Select(IdMappingRecord.From) ?? []]);
    }

    public NamespaceOption ToCri()
    {
        var o = new NamespaceOption { Network = Network, Pid = Pid, Ipc = Ipc, TargetId = TargetId };
        if (Userns is { } mode)
        {
            o.UsernsOptions = new UserNamespace { Mode = mode };
            o.UsernsOptions.Uids.AddRange(UsernsUids.Select(u => u.ToCri()));
            o.UsernsOptions.Gids.AddRange(UsernsGids.Select(g => g.ToCri()));
        }
        return o;
    }
}
