using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Namespaces;
using CriRuntime.Network;

namespace CriRuntime.Pods;

/// <summary>What RunPodSandbox checked and converted before anything is made: the request and the
/// facts decided from it, so the controller only makes things.</summary>
public sealed record PodSandboxPlan
{
    public required RunPodSandboxRequest Request { get; init; }
    /// <summary>The hostname set in the pod's UTS namespace.</summary>
    public required string Hostname { get; init; }
    /// <summary>What the pod's hostname file says: <see cref="Hostname"/>, or the node's name
    /// for a pod in the host network.</summary>
    public required string HostnameFile { get; init; }
    /// <summary>Port mappings for CNI (those with a host port).</summary>
    public IReadOnlyList<PortMappingArg> Ports { get; init; } = [];
    /// <summary>The pod's sysctls by the namespace they belong to.</summary>
    public IReadOnlyDictionary<NamespaceKind, IReadOnlyList<KeyValuePair<string, string>>> Sysctls { get; init; } =
        new Dictionary<NamespaceKind, IReadOnlyList<KeyValuePair<string, string>>>();
    /// <summary>The mappings of the pod's own user namespace (userns_options POD); null for the host's.</summary>
    public (IDMapping Uid, IDMapping Gid)? UserNamespace { get; init; }
    /// <summary>Pod-level limits for the pod cgroup (config.linux.resources), converted.</summary>
    public CgroupResources? Limits { get; init; }
    /// <summary>pids.max of the pod cgroup (pids-limit.criruntime.io/pod): in <see cref="Limits"/>
    /// too, and written on a kubelet-made pod cgroup as well; null for none.</summary>
    public long? PidsLimit { get; init; }
    /// <summary>Addresses the pod is to have (a migration target keeping the source pod's IP):
    /// asked of the CNI plugins through the `ips` capability. Empty: any.</summary>
    public IReadOnlyList<string> RequestedIps { get; init; } = [];

    public PodSandboxConfig Config => Request.Config;
    public NamespaceOption NamespaceOptions => Config.Linux?.SecurityContext?.NamespaceOptions ?? new NamespaceOption();
    public bool HostNetwork => NamespaceOptions.Network == NamespaceMode.Node;
    public bool HostIpc => NamespaceOptions.Ipc == NamespaceMode.Node;
    /// <summary>POD is the protobuf default (0): only a config that carries namespace_options (the
    /// kubelet's always does) asks for a shared pid namespace; without them each container has its own.</summary>
    public bool SharedPid => Config.Linux?.SecurityContext?.NamespaceOptions is { Pid: NamespaceMode.Pod };
    /// <summary>The pod cgroup is ours (made and removed by us) only when the kubelet gave no parent.</summary>
    public bool OwnsCgroup => string.IsNullOrEmpty(Config.Linux?.CgroupParent);

    public IEnumerable<KeyValuePair<string, string>> SysctlsOf(NamespaceKind kind) => Sysctls.GetValueOrDefault(kind, []);
}
