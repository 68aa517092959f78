using CriRuntime.Config;
using System.Security.Cryptography;
using CriRuntime.Cri.V1;
using Google.Protobuf;
using CriRuntime.Errors;
using CriRuntime.Namespaces;
using CriRuntime.Network;
using CriRuntime.Pods;
using CriRuntime.Files;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>A pod is its pinned namespaces (no pause process), its files and its network.
    /// A retry of a create for the same (name, namespace, uid, attempt) gets the same pod.</summary>
    public override async Task<RunPodSandboxResponse> RunPodSandbox(RunPodSandboxRequest request, ServerCallContext context)
    {
        var config = request.Config ?? throw Fail.InvalidArgument("config: required");
        var md = config.Metadata ?? throw Fail.InvalidArgument("config.metadata: required");
        if (string.IsNullOrEmpty(md.Name)) throw Fail.InvalidArgument("config.metadata.name: required");
        if (string.IsNullOrEmpty(md.Namespace)) throw Fail.InvalidArgument("config.metadata.namespace: required");
        if (string.IsNullOrEmpty(md.Uid)) throw Fail.InvalidArgument("config.metadata.uid: required");
        SandboxFiles.Validate(config.DnsConfig);
        // Checked (and converted) before anything is made; applied to the pod cgroup below.
        var podLimits = config.Linux?.Resources is { } resources ? Containers.ResourceLimits.From(resources, "config.linux.resources") : null;
        if (request.RuntimeHandler is { Length: > 0 } h && h != RuntimeSection.DefaultHandler && !_config.Runtime.Handlers.ContainsKey(h))
            throw Fail.NotFound($"runtime_handler: no runtime for \"{h}\" is configured (known: {string.Join(", ", HandlerNames().Where(n => n.Length > 0))})");

        var key = PodSandboxStore.Key(md.Name, md.Namespace, md.Uid, md.Attempt);
        if (_pods.FindByName(key) is { } existing) return new RunPodSandboxResponse { PodSandboxId = existing.Id };

        var id = await _pods.Creating.RunAsync(key, () => CreatePodAsync(request, podLimits), context.CancellationToken);
        return new RunPodSandboxResponse { PodSandboxId = id };
    }

    private async Task<string> CreatePodAsync(RunPodSandboxRequest request, Cgroups.CgroupResources? podLimits)
    {
        var config = request.Config;
        var md = config.Metadata;
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var nsOptions = config.Linux?.SecurityContext?.NamespaceOptions ?? new NamespaceOption();
        var hostNetwork = nsOptions.Network == NamespaceMode.Node;
        var hostIpc = nsOptions.Ipc == NamespaceMode.Node;
        var hostname = PodHostname.For(config, System.Net.Dns.GetHostName);
        if (config.LogDirectory.Length > 0 && !Path.IsPathRooted(config.LogDirectory))
            throw Fail.InvalidArgument($"config.log_directory: '{config.LogDirectory}' must be an absolute path");
        var ports = PortMappings.ForCni(config.PortMappings);

        var sysctls = config.Linux?.Sysctls ?? new Google.Protobuf.Collections.MapField<string, string>();
        var byNs = sysctls.GroupBy(kv => PodSysctls.Classify(kv.Key)).ToDictionary(g => g.Key, g => g.ToList());
        if (hostNetwork && byNs.ContainsKey(NamespaceKind.Net))
            throw Fail.InvalidArgument("config.linux.sysctls: net.* sysctls cannot be set on a pod in the host network");
        if (hostIpc && byNs.ContainsKey(NamespaceKind.Ipc))
            throw Fail.InvalidArgument("config.linux.sysctls: IPC sysctls cannot be set on a pod in the host IPC namespace");
        if (hostNetwork && byNs.ContainsKey(NamespaceKind.Uts))
            throw Fail.InvalidArgument("config.linux.sysctls: UTS sysctls cannot be set on a pod in the host network");
        var userns = PodUserNamespace.Validate(nsOptions.UsernsOptions);
        if (userns is not null && (hostNetwork || hostIpc || nsOptions.Pid is NamespaceMode.Node))
            throw Fail.InvalidArgument("config.linux.security_context.namespace_options.userns_options: a user namespace (POD) cannot be combined with the host's network, IPC or pid namespace");

        // Decided once and recorded: later calls use the record, not the current cgroup_root.
        var cgroupPath = PodCgroup(id, config);
        await using var undo = new Rollback(_log, $"RunPodSandbox {md.Namespace}/{md.Name}");
        var dir = _pods.PodDir(id);
        Directory.CreateDirectory(dir);
        undo.Add("remove pod dir", () => Directory.Delete(dir, recursive: true));
        var nsDir = Path.Combine(_config.State, "pods", id, "ns");
        undo.Add("remove ns dir", () => { if (Directory.Exists(Path.GetDirectoryName(nsDir))) Directory.Delete(Path.GetDirectoryName(nsDir)!, recursive: true); });

        string? netns = null, ipcns = null, utsns = null, userNs = null;
        if (userns is { } maps)
        {
            // The pod's namespaces are made inside its user namespace (owned by it) by the helper,
            // then set up from here through setns: host root may enter them.
            var pins = await PodUserNamespace.CreateAsync(nsDir, maps.Uid, maps.Gid, CancellationToken.None);
            undo.Add("unpin the pod's user namespace and those it owns", () => { foreach (var p in pins.All) NamespacePinner.Unpin(p); });
            (userNs, netns, ipcns, utsns) = (pins.User, pins.Net, pins.Ipc, pins.Uts);
            NamespacePinner.RunIn(NamespaceKind.Net, netns, () => { foreach (var (k, v) in byNs.GetValueOrDefault(NamespaceKind.Net, [])) WriteSysctl(k, v); });
            NamespacePinner.RunIn(NamespaceKind.Uts, utsns, () =>
            {
                NamespacePinner.SetHostname(hostname);
                foreach (var (k, v) in byNs.GetValueOrDefault(NamespaceKind.Uts, [])) WriteSysctl(k, v);
            });
            NamespacePinner.RunIn(NamespaceKind.Ipc, ipcns, () => { foreach (var (k, v) in byNs.GetValueOrDefault(NamespaceKind.Ipc, [])) WriteSysctl(k, v); });
        }
        else
        {
            if (!hostNetwork)
            {
                netns = Path.Combine(nsDir, "net");
                NamespacePinner.Pin(NamespaceKind.Net, netns, () =>
                {
                    foreach (var (k, v) in byNs.GetValueOrDefault(NamespaceKind.Net, [])) WriteSysctl(k, v);
                });
                undo.Add("unpin netns", () => NamespacePinner.Unpin(netns));
                utsns = Path.Combine(nsDir, "uts");
                NamespacePinner.Pin(NamespaceKind.Uts, utsns, () =>
                {
                    NamespacePinner.SetHostname(hostname);
                    foreach (var (k, v) in byNs.GetValueOrDefault(NamespaceKind.Uts, [])) WriteSysctl(k, v);
                });
                undo.Add("unpin utsns", () => NamespacePinner.Unpin(utsns));
            }
            if (!hostIpc)
            {
                ipcns = Path.Combine(nsDir, "ipc");
                NamespacePinner.Pin(NamespaceKind.Ipc, ipcns, () =>
                {
                    foreach (var (k, v) in byNs.GetValueOrDefault(NamespaceKind.Ipc, [])) WriteSysctl(k, v);
                });
                undo.Add("unpin ipcns", () => NamespacePinner.Unpin(ipcns));
            }
        }

        // Pod-level limits (resources, else none) go on the pod cgroup when it is ours; with a
        // cgroup_parent the kubelet owns and sizes the pod cgroup itself.
        if (string.IsNullOrEmpty(config.Linux?.CgroupParent) && podLimits is not null)
        {
            var manager = Cgroups.CgroupManagers.Create(cgroupPath);
            manager.Create(podLimits);
            undo.Add("remove pod cgroup", manager.Destroy);
        }

        // A shared pid namespace needs a pid 1 that lives as long as the pod: the pod init, in its
        // own cgroup below the pod's; its namespace is pinned next to the others for the containers.
        string? pidns = null;
        int? podInitPid = null;
        // POD is the protobuf default (0): only a config that carries namespace_options (the
        // kubelet's always does) asks for it; without them each container has its own, as before.
        if (config.Linux?.SecurityContext?.NamespaceOptions is { Pid: NamespaceMode.Pod })
        {
            var pid = await PodInit.StartAsync(id, _config.State, userNs, CancellationToken.None);
            podInitPid = pid;
            undo.Add("stop pod init", () => PodInit.StopAsync(pid, id, _config.State));
            if (string.IsNullOrEmpty(config.Linux?.CgroupParent)) // ours, made as the init cgroup's parent
                undo.Add("remove pod cgroup", Cgroups.CgroupManagers.Create(cgroupPath).Destroy);
            var initCgroup = Cgroups.CgroupManagers.Create($"{cgroupPath}/{PodInit.CgroupLeaf}");
            initCgroup.Create(new Cgroups.CgroupResources());
            undo.Add("remove pod init cgroup", initCgroup.Destroy);
            initCgroup.AddProcess(pid);
            pidns = Path.Combine(nsDir, "pid");
            NamespacePinner.PinExisting($"/proc/{pid}/ns/pid", pidns);
            undo.Add("unpin pidns", () => NamespacePinner.Unpin(pidns));
            // The pin was made through the pid: make sure it still named our pod init then.
            if (!PodInit.IsRunning(pid, id, _config.State)) throw Fail.Unavailable($"pod init {pid} of pod {id} exited during RunPodSandbox");
            Testing.FaultPoints.Crash(Testing.FaultPoints.RunPodSandboxAfterPodInit);
        }

        IReadOnlyList<string> ips = [];
        string? networkName = null;
        if (!hostNetwork)
        {
            // The kubelet sends every declared container port; only those with a host port are
            // port mappings for CNI (host_port 0 is "none", as containerd and CRI-O skip it).
            var req = new PodNetworkRequest(id, netns!, md.Name, md.Namespace, md.Uid,
                ports,
                config.DnsConfig is { } dns ? new DnsArg([.. dns.Servers], [.. dns.Searches], [.. dns.Options]) : null);
            undo.Add("tear down pod network", () => _network.TearDownAsync(id, CancellationToken.None));
            var net = await _network.SetUpAsync(req, CancellationToken.None);
            ips = net.Ips;
            networkName = net.NetworkName;
        }

        // Environment.MachineName would drop the domain part of the node's name: not that.
        AtomicFile.WriteText(Path.Combine(dir, "hostname"), (hostNetwork ? System.Net.Dns.GetHostName() : hostname) + "\n");
        AtomicFile.WriteText(Path.Combine(dir, "hosts"), hostNetwork && File.Exists("/etc/hosts") ? File.ReadAllText("/etc/hosts") : SandboxFiles.Hosts(hostname, ips));
        AtomicFile.WriteText(Path.Combine(dir, "resolv.conf"), SandboxFiles.ResolvConf(config.DnsConfig));

        var pod = new PodSandboxRecord
        {
            Id = id,
            Name = md.Name,
            Namespace = md.Namespace,
            Uid = md.Uid,
            Attempt = md.Attempt,
            State = PodState.Ready,
            CreatedAtNanos = NowNanos(),
            RuntimeHandler = request.RuntimeHandler,
            Config = config.ToByteArray(),
            NetNs = netns,
            IpcNs = ipcns,
            UtsNs = utsns,
            UserNs = userNs,
            PidNs = pidns,
            PodInitPid = podInitPid,
            CgroupPath = cgroupPath,
            Ips = ips,
            NetworkName = networkName,
            Dir = dir,
        };
        _pods.Save(pod);
        undo.Commit();
        return id;

        static void WriteSysctl(string key, string value)
        {
            try { NamespacePinner.WriteSysctl(key, value); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            { throw Fail.InvalidArgument($"config.linux.sysctls: cannot set {key}={value}: {e.Message}"); }
        }
    }
}
