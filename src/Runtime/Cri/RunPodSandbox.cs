using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Namespaces;
using CriRuntime.Pods;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>A pod is its pinned namespaces (no pause process), its files and its network.
    /// A retry of a create for the same (name, namespace, uid, attempt) gets the same pod.</summary>
    public override async Task<RunPodSandboxResponse> RunPodSandbox(RunPodSandboxRequest request, ServerCallContext context) =>
        new() { PodSandboxId = await RunPodSandboxAsync(request, [], context.CancellationToken) };

    /// <summary>RunPodSandbox, with the addresses the pod is to have (<paramref name="ips"/>: a
    /// migration target keeping the source pod's IP; empty: any). Answers the pod's id.</summary>
    public async Task<string> RunPodSandboxAsync(RunPodSandboxRequest request, IReadOnlyList<string> ips, CancellationToken ct)
    {
        var config = request.Config ?? throw Fail.InvalidArgument("config: required");
        var md = config.Metadata ?? throw Fail.InvalidArgument("config.metadata: required");
        if (string.IsNullOrEmpty(md.Name)) throw Fail.InvalidArgument("config.metadata.name: required");
        if (string.IsNullOrEmpty(md.Namespace)) throw Fail.InvalidArgument("config.metadata.namespace: required");
        if (string.IsNullOrEmpty(md.Uid)) throw Fail.InvalidArgument("config.metadata.uid: required");
        SandboxFiles.Validate(config.DnsConfig);
        // Checked (and converted) before anything is made; applied to the pod cgroup below.
        var podLimits = config.Linux?.Resources is { } resources ? Containers.ResourceLimits.From(resources, "config.linux.resources") : null;
        // The limits the CRI does not carry (pids per pod, open files, /dev/shm), by annotation.
        PartitionLimits.ValidatePod(config.Annotations, PartitionLimits.RuntimeNofileHard);
        var podPids = PartitionLimits.PodPids(config.Annotations);
        // io-limit.criruntime.io/pod: throttles for the pod cgroup, all its containers together
        // (rootfs: the disk under the storage root; the pod has no loop device of its own).
        if (Storage.IoLimits.PodLimits(config.Annotations, d => Containers.ContainerController.IoDevice(d, null, _config.Root)) is { } podIo)
        {
            // v1 blk-throttle is not hierarchical: a rule on the pod cgroup never slows its
            // containers' cgroups below it (tried on this host), so refuse instead of ignoring it.
            if (Cgroups.CgroupManagers.Layout.V1Mounts.ContainsKey("blkio"))
                throw Fail.InvalidArgument($"annotation {Storage.IoLimits.PodWideAnnotation}: the blkio controller is cgroup v1 here, whose throttles are not hierarchical, so a pod-wide limit would not limit the pod's containers; it needs cgroup v2 (use {Storage.IoLimits.PodAnnotationPrefix}NAME per container)");
            var io = Cgroups.CgroupResourcesFromSpec.Map(new Oci.LinuxResources { BlockIo = podIo });
            podLimits = (podLimits ?? new Cgroups.CgroupResources()) with
            {
                BlkioThrottleReadBps = io.BlkioThrottleReadBps,
                BlkioThrottleWriteBps = io.BlkioThrottleWriteBps,
                BlkioThrottleReadIops = io.BlkioThrottleReadIops,
                BlkioThrottleWriteIops = io.BlkioThrottleWriteIops,
            };
        }
        if (request.RuntimeHandler is { Length: > 0 } h && h != RuntimeSection.DefaultHandler && !_config.Runtime.Handlers.ContainsKey(h))
            throw Fail.NotFound($"runtime_handler: no runtime for \"{h}\" is configured (known: {string.Join(", ", HandlerNames().Where(n => n.Length > 0))})");

        var nsOptions = config.Linux?.SecurityContext?.NamespaceOptions ?? new NamespaceOption();
        var hostNetwork = nsOptions.Network == NamespaceMode.Node;
        var hostIpc = nsOptions.Ipc == NamespaceMode.Node;
        var hostname = PodHostname.For(config, System.Net.Dns.GetHostName);
        if (config.LogDirectory.Length > 0 && !Path.IsPathRooted(config.LogDirectory))
            throw Fail.InvalidArgument($"config.log_directory: '{config.LogDirectory}' must be an absolute path");
        // The kubelet sends every declared container port; only those with a host port are
        // port mappings for CNI (host_port 0 is "none", as containerd and CRI-O skip it).
        var ports = PortMappings.ForCni(config.PortMappings);

        var sysctls = config.Linux?.Sysctls ?? new Google.Protobuf.Collections.MapField<string, string>();
        var byNs = sysctls.GroupBy(kv => PodSysctls.Classify(kv.Key)).ToDictionary(g => g.Key, g => (IReadOnlyList<KeyValuePair<string, string>>)g.ToList());
        if (hostNetwork && byNs.ContainsKey(NamespaceKind.Net))
            throw Fail.InvalidArgument("config.linux.sysctls: net.* sysctls cannot be set on a pod in the host network");
        if (hostIpc && byNs.ContainsKey(NamespaceKind.Ipc))
            throw Fail.InvalidArgument("config.linux.sysctls: IPC sysctls cannot be set on a pod in the host IPC namespace");
        if (hostNetwork && byNs.ContainsKey(NamespaceKind.Uts))
            throw Fail.InvalidArgument("config.linux.sysctls: UTS sysctls cannot be set on a pod in the host network");
        var userns = PodUserNamespace.Validate(nsOptions.UsernsOptions);
        if (userns is not null && (hostNetwork || hostIpc || nsOptions.Pid is NamespaceMode.Node))
            throw Fail.InvalidArgument("config.linux.security_context.namespace_options.userns_options: a user namespace (POD) cannot be combined with the host's network, IPC or pid namespace");

        // The partition /proc view (lxcfs): refused now, naming why, rather than at CreateContainer.
        if (PartitionView.ProcView.Wanted(config.Annotations, request.RuntimeHandler, _config))
            (_lxcfs ?? throw Fail.FailedPrecondition($"config.annotations[{PartitionView.ProcView.Annotation}]: the partition /proc view is not available in this daemon")).RequireMount();

        var plan = new PodSandboxPlan
        {
            Request = request,
            Hostname = hostname,
            // Environment.MachineName would drop the domain part of the node's name: not that.
            HostnameFile = hostNetwork ? System.Net.Dns.GetHostName() : hostname,
            Ports = ports,
            Sysctls = byNs,
            UserNamespace = userns,
            Limits = podPids is { } pids ? (podLimits ?? new Cgroups.CgroupResources()) with { PidsLimit = pids } : podLimits,
            PidsLimit = podPids,
            RequestedIps = ips,
        };
        return await _podCtl.RunAsync(plan, ct);
    }
}
