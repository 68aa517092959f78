using System.Text.Json;
using CriRuntime.Cri.V1;
using Google.Protobuf;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>What a Kubernetes pod spec says, in the few fields these tests vary.</summary>
public sealed record KubePod
{
    public required string Name { get; init; }
    public string Namespace { get; init; } = "default";
    public string Uid { get; init; } = Guid.NewGuid().ToString();
    /// <summary>spec.hostname; null: the pod's name (truncated to 63), as the kubelet does.</summary>
    public string? Hostname { get; init; }
    public bool HostNetwork { get; init; }
    public bool ShareProcessNamespace { get; init; }
    public bool Privileged { get; init; }
    /// <summary>containerPort -> hostPort (0: none), each TCP.</summary>
    public IReadOnlyList<(int ContainerPort, int HostPort)> Ports { get; init; } = [];
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string> { ["app"] = "web" };
    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();
    /// <summary>The kubelet's log root (/var/log/pods in real life): the pod's log directory goes under it.</summary>
    public required string LogRoot { get; init; }
}

/// <summary>CRI requests built the way the kubelet builds them (kubernetes pkg/kubelet/kuberuntime:
/// generatePodSandboxConfig, generatePodSandboxLinuxConfig, generateContainerConfig,
/// generateLinuxContainerConfig, makeMounts), so e2e tests exercise what a real node sends rather
/// than a minimal request of our own: labels and annotations the kubelet adds, the log directory
/// and per-container log path, DNS with ndots, every containerPort as a port mapping (host_port 0
/// when no hostPort), namespace options on both pod and container, the default masked and
/// read-only paths, RuntimeDefault seccomp, a termination-log mount, CPU shares and period.</summary>
public static class Kubelet
{
    // The kubelet's defaults for the Default proc mount type (pkg/securitycontext).
    private static readonly string[] MaskedPaths =
    [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ];

    private static readonly string[] ReadonlyPaths =
        ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

    public static string LogDirectory(KubePod p) => Path.Combine(p.LogRoot, $"{p.Namespace}_{p.Name}_{p.Uid}");

    public static NamespaceOption Namespaces(KubePod p) => new()
    {
        Network = p.HostNetwork ? NamespaceMode.Node : NamespaceMode.Pod,
        Pid = p.ShareProcessNamespace ? NamespaceMode.Pod : NamespaceMode.Container,
        Ipc = NamespaceMode.Pod,
    };

    public static PodSandboxConfig Sandbox(KubePod p)
    {
        var config = new PodSandboxConfig
        {
            Metadata = new PodSandboxMetadata { Name = p.Name, Namespace = p.Namespace, Uid = p.Uid, Attempt = 0 },
            LogDirectory = LogDirectory(p),
            Linux = new LinuxPodSandboxConfig
            {
                SecurityContext = new LinuxSandboxSecurityContext
                {
                    NamespaceOptions = Namespaces(p),
                    Privileged = p.Privileged,
                    Seccomp = new SecurityProfile { ProfileType = SecurityProfile.Types.ProfileType.RuntimeDefault },
                },
            },
        };
        // A host-network pod gets no hostname from the kubelet: it has the node's.
        if (!p.HostNetwork) config.Hostname = p.Hostname ?? (p.Name.Length > 63 ? p.Name[..63] : p.Name);
        if (!p.HostNetwork)
            config.DnsConfig = new DNSConfig
            {
                Servers = { "10.96.0.10" },
                Searches = { $"{p.Namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local" },
                Options = { "ndots:5" },
            };
        foreach (var (k, v) in p.Labels) config.Labels[k] = v;
        config.Labels["io.kubernetes.pod.name"] = p.Name;
        config.Labels["io.kubernetes.pod.namespace"] = p.Namespace;
        config.Labels["io.kubernetes.pod.uid"] = p.Uid;
        foreach (var (k, v) in p.Annotations) config.Annotations[k] = v;
        config.Annotations["kubernetes.io/config.seen"] = DateTime.UtcNow.ToString("O");
        config.Annotations["kubernetes.io/config.source"] = "api";
        foreach (var (containerPort, hostPort) in p.Ports)
            config.PortMappings.Add(new PortMapping { Protocol = Protocol.Tcp, ContainerPort = containerPort, HostPort = hostPort });
        return config;
    }

    /// <summary>A container as the kubelet creates it: <paramref name="imageId"/> is what
    /// ImageStatus reported for the pod's image (the kubelet passes the image id, with the
    /// user's reference beside it).</summary>
    public static ContainerConfig Container(KubePod p, string name, string imageId, string userImage, string[] command,
        IReadOnlyDictionary<string, string>? env = null, int restartCount = 0)
    {
        var c = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = name, Attempt = (uint)restartCount },
            Image = new ImageSpec { Image = imageId, UserSpecifiedImage = userImage },
            Command = { command },
            LogPath = $"{name}/{restartCount}.log",
            Linux = new LinuxContainerConfig
            {
                Resources = new LinuxContainerResources { CpuPeriod = 100000, CpuShares = 2, OomScoreAdj = 1000 },
                SecurityContext = new LinuxContainerSecurityContext
                {
                    NamespaceOptions = Namespaces(p),
                    Privileged = p.Privileged,
                    Seccomp = p.Privileged ? null : new SecurityProfile { ProfileType = SecurityProfile.Types.ProfileType.RuntimeDefault },
                },
            },
        };
        // Every huge page size the node has, limited to 0 unless requested (kuberuntime
        // GetHugepageLimitsFromResources); sizes named as the kubelet names them ("2MB", "1GB").
        foreach (var dir in Directory.Exists("/sys/kernel/mm/hugepages") ? Directory.GetDirectories("/sys/kernel/mm/hugepages", "hugepages-*kB") : [])
        {
            var kb = long.Parse(Path.GetFileName(dir)["hugepages-".Length..^"kB".Length], System.Globalization.CultureInfo.InvariantCulture);
            var size = kb >= 1024 * 1024 ? $"{kb / (1024 * 1024)}GB" : kb >= 1024 ? $"{kb / 1024}MB" : $"{kb}KB";
            c.Linux.Resources.HugepageLimits.Add(new HugepageLimit { PageSize = size, Limit = 0 });
        }
        if (!p.Privileged)
        {
            c.Linux.SecurityContext.MaskedPaths.Add(MaskedPaths);
            c.Linux.SecurityContext.ReadonlyPaths.Add(ReadonlyPaths);
        }
        // Kubernetes env values are strings; the CRI field is bytes (UTF-8).
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
            c.Envs.Add(new KeyValue { Key = k, Value = ByteString.CopyFromUtf8(v) });
        c.Labels["io.kubernetes.container.name"] = name;
        c.Labels["io.kubernetes.pod.name"] = p.Name;
        c.Labels["io.kubernetes.pod.namespace"] = p.Namespace;
        c.Labels["io.kubernetes.pod.uid"] = p.Uid;
        c.Annotations["io.kubernetes.container.hash"] = "1a2b3c4d";
        c.Annotations["io.kubernetes.container.restartCount"] = restartCount.ToString(System.Globalization.CultureInfo.InvariantCulture);
        c.Annotations["io.kubernetes.container.terminationMessagePath"] = "/dev/termination-log";
        c.Annotations["io.kubernetes.container.terminationMessagePolicy"] = "File";
        c.Annotations["io.kubernetes.pod.terminationGracePeriod"] = "30";
        if (p.Ports.Count > 0)
            c.Annotations["io.kubernetes.container.ports"] = JsonSerializer.Serialize(p.Ports.Select(x => new { containerPort = x.ContainerPort, protocol = "TCP" }));
        // The termination message file: the kubelet creates it under the pod's directory and
        // mounts it read-write at terminationMessagePath.
        var podDir = Path.Combine(p.LogRoot, "..", "pods", p.Uid, "containers", name);
        Directory.CreateDirectory(podDir);
        var termination = Path.GetFullPath(Path.Combine(podDir, "termination-log"));
        File.WriteAllText(termination, "");
        c.Mounts.Add(new Mount { ContainerPath = "/dev/termination-log", HostPath = termination, SelinuxRelabel = false });
        // The kubelet manages /etc/hosts of a pod in its own network namespace (kubelet_pods.go
        // makeMounts): its file, written after the sandbox got its IP, mounted over ours.
        if (!p.HostNetwork)
        {
            var hosts = Path.GetFullPath(Path.Combine(podDir, "..", "..", "etc-hosts"));
            File.WriteAllText(hosts, $"# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.1\t{p.Name}\n");
            c.Mounts.Add(new Mount { ContainerPath = "/etc/hosts", HostPath = hosts });
        }
        return c;
    }
}
