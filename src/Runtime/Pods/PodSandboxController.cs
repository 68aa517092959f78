using CriRuntime.Files;
using System.Security.Cryptography;
using CriRuntime.Cgroups;
using CriRuntime.Config;
using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Namespaces;
using CriRuntime.Network;
using CriRuntime.State;
using Google.Protobuf;

namespace CriRuntime.Pods;

/// <summary>Runs, stops and removes pods: the steps under RunPodSandbox, StopPodSandbox and
/// RemovePodSandbox (namespaces, the pod cgroup, the pod init, the network, the pod's files, its
/// record), each undone when a later one fails. The RPC files validate and convert; this makes
/// things through interfaces (<see cref="IPodNamespaces"/>, <see cref="IPodInit"/>,
/// <see cref="IPodNetwork"/>, <see cref="ICgroupManagerFactory"/>) that unit tests fake.</summary>
public sealed class PodSandboxController(
    CriRuntimeConfig config,
    PodSandboxStore pods,
    ContainerController containers,
    Storage.IWritableVolumes volumes,
    IPodNamespaces namespaces,
    IPodInit podInit,
    IPodNetwork network,
    ICgroupManagerFactory cgroups,
    TimeProvider clock,
    ILogger<PodSandboxController> log,
    Kernel.IHostKernel? hostKernel = null)
{
    /// <summary>Mounts of the pod itself (its /dev/shm).</summary>
    private readonly Kernel.IHostKernel kernel = hostKernel ?? Kernel.HostKernel.Instance;

    /// <summary>The pod init's cgroup (pods with a shared pid namespace): a leaf below the pod's,
    /// named so that it cannot be taken for a container's (64 hex digits).</summary>
    public static string PodInitCgroup(PodSandboxRecord pod) => $"{pod.CgroupPath}/{PodInit.CgroupLeaf}";

    /// <summary>Where the pod's namespaces are pinned: below the state directory, which a reboot clears.</summary>
    public string StateDir(string podId) => Path.Combine(config.State, "pods", podId);

    /// <summary>The pod of this (name, namespace, uid, attempt), made unless it exists: a retry
    /// (also one while the first call still runs) gets the same pod.</summary>
    public async Task<string> RunAsync(PodSandboxPlan plan, CancellationToken ct)
    {
        var md = plan.Config.Metadata;
        var key = PodSandboxStore.Key(md.Name, md.Namespace, md.Uid, md.Attempt);
        if (pods.FindByName(key) is { } existing) return existing.Id;
        return await pods.Creating.RunAsync(key, () => CreateAsync(plan), ct);
    }

    private async Task<string> CreateAsync(PodSandboxPlan plan)
    {
        var podConfig = plan.Config;
        var md = podConfig.Metadata;
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        // Decided once and recorded: later calls use the record, not the current cgroup_root.
        var cgroupPath = PodSandboxStore.CgroupPathFor(id, podConfig.Linux?.CgroupParent ?? "", config.Runtime.CgroupRoot);
        var quota = Storage.DiskQuota.ForPod(podConfig.Annotations);
        await using var undo = new Rollback(log, $"RunPodSandbox {md.Namespace}/{md.Name}");
        var dir = pods.PodDir(id);
        Directory.CreateDirectory(dir);
        undo.Add("remove pod dir", () => Directory.Delete(dir, recursive: true));
        // One volume for the whole pod: every container's writable layer is inside it (a
        // container with a quota of its own has its image file there), so together they cannot
        // pass the pod's quota, however they share it.
        Storage.WritableVolume? volume = null;
        if (quota > 0)
        {
            volume = volumes.CreateForPod(Path.Combine(dir, Storage.FileVolumes.ImageName), Path.Combine(dir, Storage.FileVolumes.MountName), quota);
            undo.Add("release pod volume", () => volumes.Release(volume));
        }
        var stateDir = StateDir(id);
        var nsDir = Path.Combine(stateDir, "ns");
        undo.Add("remove ns dir", () => { if (Directory.Exists(stateDir)) Directory.Delete(stateDir, recursive: true); });

        string? netns = null, ipcns = null, utsns = null, userNs = null;
        if (plan.UserNamespace is { } maps)
        {
            // The pod's namespaces are made inside its user namespace (owned by it) by the helper,
            // then set up from here through setns: host root may enter them.
            var pins = await namespaces.CreateUserNamespaceAsync(nsDir, maps.Uid, maps.Gid, CancellationToken.None);
            undo.Add("unpin the pod's user namespace and those it owns", () => { foreach (var p in pins.All) namespaces.Unpin(p); });
            (userNs, netns, ipcns, utsns) = (pins.User, pins.Net, pins.Ipc, pins.Uts);
            namespaces.RunIn(NamespaceKind.Net, netns, () => WriteSysctls(plan, NamespaceKind.Net));
            namespaces.RunIn(NamespaceKind.Uts, utsns, () =>
            {
                namespaces.SetHostname(plan.Hostname);
                WriteSysctls(plan, NamespaceKind.Uts);
            });
            namespaces.RunIn(NamespaceKind.Ipc, ipcns, () => WriteSysctls(plan, NamespaceKind.Ipc));
        }
        else
        {
            if (!plan.HostNetwork)
            {
                netns = Path.Combine(nsDir, "net");
                namespaces.Pin(NamespaceKind.Net, netns, () => WriteSysctls(plan, NamespaceKind.Net));
                undo.Add("unpin netns", () => namespaces.Unpin(netns));
                utsns = Path.Combine(nsDir, "uts");
                namespaces.Pin(NamespaceKind.Uts, utsns, () =>
                {
                    namespaces.SetHostname(plan.Hostname);
                    WriteSysctls(plan, NamespaceKind.Uts);
                });
                undo.Add("unpin utsns", () => namespaces.Unpin(utsns));
            }
            if (!plan.HostIpc)
            {
                ipcns = Path.Combine(nsDir, "ipc");
                namespaces.Pin(NamespaceKind.Ipc, ipcns, () => WriteSysctls(plan, NamespaceKind.Ipc));
                undo.Add("unpin ipcns", () => namespaces.Unpin(ipcns));
            }
        }

        // Pod-level limits (resources, else none) go on the pod cgroup when it is ours; with a
        // cgroup_parent the kubelet owns and sizes the pod cgroup itself.
        if (plan.OwnsCgroup && plan.Limits is not null)
        {
            var manager = cgroups.Create(cgroupPath);
            manager.Create(plan.Limits);
            undo.Add("remove pod cgroup", manager.Destroy);
        }
        // The kubelet made and sizes its pod cgroup, but has no per-pod pids limit of a pod's own
        // (only the node's podPidsLimit): the annotation's goes on it; nothing else is touched.
        else if (!plan.OwnsCgroup && plan.PidsLimit is { } pids)
        {
            try { cgroups.Create(cgroupPath).Create(new CgroupResources { PidsLimit = pids }); }
            catch (IOException e) { throw Fail.FailedPrecondition($"annotation {PartitionLimits.PidsAnnotation}: pod cgroup {cgroupPath}: {e.Message}"); }
        }

        // A shared pid namespace needs a pid 1 that lives as long as the pod: the pod init, in its
        // own cgroup below the pod's; its namespace is pinned next to the others for the containers.
        string? pidns = null;
        int? podInitPid = null;
        if (plan.SharedPid)
        {
            var pid = await podInit.StartAsync(id, userNs, CancellationToken.None);
            podInitPid = pid;
            undo.Add("stop pod init", () => podInit.StopAsync(pid, id));
            if (plan.OwnsCgroup) // ours, made as the init cgroup's parent
                undo.Add("remove pod cgroup", cgroups.Create(cgroupPath).Destroy);
            var initCgroup = cgroups.Create($"{cgroupPath}/{PodInit.CgroupLeaf}");
            initCgroup.Create(new CgroupResources());
            undo.Add("remove pod init cgroup", initCgroup.Destroy);
            initCgroup.AddProcess(pid);
            pidns = Path.Combine(nsDir, "pid");
            namespaces.PinExisting($"/proc/{pid}/ns/pid", pidns);
            undo.Add("unpin pidns", () => namespaces.Unpin(pidns));
            // The pin was made through the pid: make sure it still named our pod init then.
            if (!podInit.IsRunning(pid, id)) throw Fail.Unavailable($"pod init {pid} of pod {id} exited during RunPodSandbox");
            Testing.FaultPoints.Crash(Testing.FaultPoints.RunPodSandboxAfterPodInit);
        }

        // The pod's /dev/shm, shared by its containers as its IPC namespace is (PodShm).
        var shm = "/dev/shm";
        if (!plan.HostIpc)
        {
            shm = PodShm.PathOf(dir);
            PodShm.Mount(kernel, dir, PartitionLimits.ShmBytes(podConfig.Annotations));
            undo.Add("unmount pod shm", () => PodShm.Unmount(kernel, dir));
        }

        IReadOnlyList<string> ips = [];
        string? networkName = null;
        if (!plan.HostNetwork)
        {
            var req = new PodNetworkRequest(id, netns!, md.Name, md.Namespace, md.Uid, plan.Ports,
                podConfig.DnsConfig is { } dns ? new DnsArg([.. dns.Servers], [.. dns.Searches], [.. dns.Options]) : null,
                Ips: plan.RequestedIps);
            undo.Add("tear down pod network", () => network.TearDownAsync(id, CancellationToken.None));
            var net = await network.SetUpAsync(req, CancellationToken.None);
            ips = net.Ips;
            networkName = net.NetworkName;
        }

        AtomicFile.WriteText(Path.Combine(dir, "hostname"), plan.HostnameFile + "\n");
        AtomicFile.WriteText(Path.Combine(dir, "hosts"), plan.HostNetwork && File.Exists("/etc/hosts") ? File.ReadAllText("/etc/hosts") : SandboxFiles.Hosts(plan.Hostname, ips));
        AtomicFile.WriteText(Path.Combine(dir, "resolv.conf"), SandboxFiles.ResolvConf(podConfig.DnsConfig));

        var pod = new PodSandboxRecord
        {
            Version = PodSandboxRecord.CurrentVersion,
            Id = id,
            Name = md.Name,
            Namespace = md.Namespace,
            Uid = md.Uid,
            Attempt = md.Attempt,
            State = PodState.Ready,
            CreatedAtNanos = ExitMonitor.Nanos(clock.GetUtcNow()),
            RuntimeHandler = plan.Request.RuntimeHandler,
            Config = podConfig.ToByteArray(),
            NetNs = netns,
            IpcNs = ipcns,
            UtsNs = utsns,
            UserNs = userNs,
            PidNs = pidns,
            PodInitPid = podInitPid,
            CgroupPath = cgroupPath,
            OwnsCgroup = plan.OwnsCgroup,
            Labels = new Dictionary<string, string>(podConfig.Labels),
            Annotations = new Dictionary<string, string>(podConfig.Annotations),
            NamespaceModes = NamespaceModesRecord.From(podConfig.Linux?.SecurityContext?.NamespaceOptions),
            Resources = ResourcesRecord.From(podConfig.Linux?.Resources),
            Overhead = ResourcesRecord.From(podConfig.Linux?.Overhead),
            Ips = ips,
            NetworkName = networkName,
            Dir = dir,
            Volume = volume,
            Shm = shm,
        };
        pods.Add(pod);
        undo.Commit();
        return id;
    }

    private void WriteSysctls(PodSandboxPlan plan, NamespaceKind kind)
    {
        foreach (var (key, value) in plan.SysctlsOf(kind))
        {
            try { namespaces.WriteSysctl(key, value); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            { throw Fail.InvalidArgument($"config.linux.sysctls: cannot set {key}={value}: {e.Message}"); }
        }
    }

    /// <summary>Stops every container of the pod and releases its network. Idempotent: an unknown
    /// or already stopped pod is success, and teardown is attempted again each time until it worked.</summary>
    public async Task StopAsync(string podId, CancellationToken ct)
    {
        using (await pods.LockAsync(podId, ct))
        {
            if (pods.Find(podId) is { } pod) await StopLockedAsync(pod, ct);
        }
    }

    private async Task StopLockedAsync(PodSandboxRecord pod, CancellationToken ct)
    {
        // NotReady, durably, before anything is torn down (as containerd and CRI-O do): a crash at
        // any later point leaves a pod reported NotReady, never a Ready one whose network (and IP,
        // back in the pool) is gone; the kubelet's retried stop or remove finishes the teardown,
        // each step of which is idempotent.
        pods.Transition(pod.Id, PodState.NotReady);
        // Containers first (killed: the kubelet has already given them their grace period).
        foreach (var c in containers.InPod(pod.Id).ToList())
            await containers.StopAsync(c, TimeSpan.Zero, ct);
        // Then the pod init (the kernel kills whatever is left in the shared pid namespace with it).
        if (pod.PodInitPid is { } initPid) await podInit.StopAsync(initPid, pod.Id);
        if (pod.PidNs is not null) namespaces.Unpin(pod.PidNs);
        if (pod.NetNs is not null)
        {
            await network.TearDownAsync(pod.Id, ct);
            Testing.FaultPoints.Crash(Testing.FaultPoints.StopPodSandboxAfterNetworkTeardown);
            namespaces.Unpin(pod.NetNs);
        }
        // No container of the pod runs any more (containerd and CRI-O unmount it here too).
        PodShm.Unmount(kernel, pod.Dir);
    }

    /// <summary>The kubelet's new pod-level resources (in-place resize): when the pod cgroup is ours
    /// its limits change live, then the record keeps what is in force. A kubelet-managed pod cgroup
    /// is the kubelet's to write; its resources are only recorded.</summary>
    public async Task UpdateResourcesAsync(string podId, LinuxContainerResources? resources, CgroupResources limits,
        LinuxContainerResources? overhead, CancellationToken ct)
    {
        using (await pods.LockAsync(podId, ct))
        {
            var pod = pods.Find(podId) ?? throw Fail.NotFound($"pod sandbox {podId} not found");
            if (pod.OwnsCgroup && resources is not null)
            {
                // Create is idempotent: the cgroup may not exist before a container.
                try { cgroups.Create(pod.CgroupPath).Create(limits); }
                catch (IOException e) { throw Fail.FailedPrecondition($"update pod cgroup {pod.CgroupPath}: {e.Message}"); }
            }
            pods.Update(pod.Id, p => p with
            {
                Resources = resources is null ? p.Resources : ResourcesRecord.From(resources),
                Overhead = overhead is null ? p.Overhead : ResourcesRecord.From(overhead),
            });
        }
    }

    /// <summary>Removes a pod and everything it owned (stopping it first if needed). Idempotent.</summary>
    public async Task RemoveAsync(string podId, CancellationToken ct)
    {
        using (await pods.LockAsync(podId, ct))
        {
            var pod = pods.Find(podId);
            if (pod is null) return;
            await StopLockedAsync(pod, ct);
            foreach (var c in containers.InPod(pod.Id).ToList())
                await containers.RemoveAsync(c, ct);
            if (pod.PodInitPid is not null) cgroups.Create(PodInitCgroup(pod)).Destroy();
            // The pod cgroup is ours only when the kubelet gave no parent (it manages its own).
            if (pod.OwnsCgroup) cgroups.Create(pod.CgroupPath).Destroy();
            // After its containers: their layers (and volumes) were inside.
            if (pod.Volume is not null) volumes.Release(pod.Volume);
            foreach (var ns in new[] { pod.NetNs, pod.IpcNs, pod.UtsNs, pod.PidNs, pod.UserNs })
                if (ns is not null) namespaces.Unpin(ns);
            PodShm.Unmount(kernel, pod.Dir);
            var stateDir = StateDir(pod.Id);
            if (Directory.Exists(stateDir)) Directory.Delete(stateDir, recursive: true);
            pods.Delete(pod.Id);
        }
    }
}
