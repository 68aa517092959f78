using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Oci;
using OciMount = CriRuntime.Oci.Mount;
using OciProcess = CriRuntime.Oci.Process;

namespace CriRuntime.Containers;

/// <summary>Everything the OCI spec of one container is made from.</summary>
public sealed record SpecInput
{
    public required string ContainerId { get; init; }
    public required ContainerConfig Config { get; init; }
    public required PodSandboxConfig PodConfig { get; init; }
    /// <summary>The image's defaults (entrypoint, cmd, env, working dir, user); null for none.</summary>
    public Images.Oci.ContainerDefaults? Image { get; init; }
    public required UserResolver.Resolved User { get; init; }
    public string? NetNs { get; init; }
    public string? IpcNs { get; init; }
    public string? UtsNs { get; init; }
    /// <summary>The pod's user namespace (pinned), when it has one (userns_options POD).</summary>
    public string? UserNs { get; init; }
    /// <summary>The pod's shared pid namespace (pinned), when the pod has one.</summary>
    public string? PidNs { get; init; }
    /// <summary>pid TARGET: the target container's pid namespace (/proc/PID/ns/pid of its init).</summary>
    public string? TargetPidNs { get; init; }
    /// <summary>The pod's hostname, hosts and resolv.conf files.</summary>
    public required string PodDir { get; init; }
    public required string CgroupsPath { get; init; }
    /// <summary>The host's device nodes (<see cref="HostDevices"/>), which a privileged container
    /// gets in its /dev; null or empty for none.</summary>
    public IReadOnlyList<LinuxDevice>? HostDevices { get; init; }
    /// <summary>The lxcfs mount whose files the container gets over its own /proc and /sys ones
    /// (the partition view, <see cref="PartitionView.ProcView"/>); null for none.</summary>
    public string? ProcView { get; init; }
    /// <summary>The runtime's pids_limit for every container; 0 for none.</summary>
    public long PidsLimit { get; init; }
    /// <summary>RLIMIT_NOFILE (<see cref="Pods.PartitionLimits.Nofile"/>); null: the runtime's are inherited.</summary>
    public (ulong Soft, ulong Hard)? Nofile { get; init; }
    /// <summary>The size of the container's /dev/shm tmpfs (<see cref="Pods.PartitionLimits.ShmBytes"/>).</summary>
    public ulong ShmBytes { get; init; } = Pods.PartitionLimits.DefaultShmBytes;
    /// <summary>The pod's /dev/shm on the host (<see cref="Pods.PodShm"/>, or the host's own for a
    /// pod on the host's IPC namespace), bound at /dev/shm; null: a tmpfs of the container's own
    /// of <see cref="ShmBytes"/> (a pod made by an older daemon).</summary>
    public string? Shm { get; init; }
    /// <summary>The capabilities the runtime holds (<see cref="RuntimeCapabilities.Bounding"/>):
    /// what privileged and add_capabilities ALL grant, and the most any container can have.</summary>
    public required IReadOnlyList<string> RuntimeCapabilities { get; init; }
    /// <summary>Answers what the spec needs to know of the host: the type and number of each
    /// requested device. The real kernel unless a test gives a recording one.</summary>
    public Kernel.IHostKernel Kernel { get; init; } = CriRuntime.Kernel.HostKernel.Instance;
}

/// <summary>Builds a container's OCI runtime spec from the kubelet's ContainerConfig, the pod and
/// the image: a function of its input, so every rule here is unit-tested without a kernel (the
/// one question to the host, a requested device's number, goes to <see cref="SpecInput.Kernel"/>).</summary>
public static class SpecBuilder
{
    /// <summary>The capabilities a container has unless its security context changes them (the
    /// set Docker, containerd and CRI-O agree on).</summary>
    public static readonly string[] DefaultCapabilities =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ];

    /// <summary>Every capability this runtime knows, in capability number order (linux/capability.h).</summary>
    public static readonly string[] AllCapabilities = CapabilityNames.ByNumber;

    public static readonly string[] DefaultMaskedPaths =
    [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ];

    public static readonly string[] DefaultReadonlyPaths =
        ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

    public const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    public static Spec Build(SpecInput input)
    {
        var c = input.Config;
        var sc = c.Linux?.SecurityContext ?? new LinuxContainerSecurityContext();
        var privileged = sc.Privileged;

        var args = Args(c, input.Image);
        var caps = Capabilities(sc.Capabilities, privileged, input.RuntimeCapabilities);
        var process = new OciProcess
        {
            Terminal = c.Tty,
            Args = args,
            Env = Env(c, input.Image),
            Cwd = c.WorkingDir is { Length: > 0 } wd ? wd : input.Image?.WorkingDir is { Length: > 0 } iwd ? iwd : "/",
            User = new User
            {
                Uid = input.User.Uid,
                Gid = input.User.Gid,
                AdditionalGids = input.User.AdditionalGids.Count > 0 ? input.User.AdditionalGids : null,
            },
            Capabilities = new LinuxCapabilities
            {
                Bounding = caps,
                Effective = caps,
                Permitted = caps,
                Ambient = sc.Capabilities?.AddAmbientCapabilities is { Count: > 0 } amb ? [.. amb.Select(CapName)] : null,
            },
            NoNewPrivileges = sc.NoNewPrivs,
            OomScoreAdj = c.Linux?.Resources is { } r ? (int)r.OomScoreAdj : null,
            Rlimits = input.Nofile is { } nofile ? [new Rlimit { Type = "RLIMIT_NOFILE", Soft = nofile.Soft, Hard = nofile.Hard }] : null,
        };

        var namespaces = new List<LinuxNamespace>
        {
            new() { Type = "mount" },
            new() { Type = "cgroup" },
        };
        UserNamespace(sc.NamespaceOptions?.UsernsOptions, input, namespaces);
        if (input.NetNs is not null) namespaces.Add(new() { Type = "network", Path = input.NetNs });
        if (input.IpcNs is not null) namespaces.Add(new() { Type = "ipc", Path = input.IpcNs });
        if (input.UtsNs is not null) namespaces.Add(new() { Type = "uts", Path = input.UtsNs });
        // POD is the protobuf default: without namespace_options a container gets its own.
        switch (sc.NamespaceOptions?.Pid ?? NamespaceMode.Container)
        {
            case NamespaceMode.Node:
                break; // the host's: no pid namespace of its own
            case NamespaceMode.Pod:
                // Joined, so the container's process is not pid 1: the pod init is.
                namespaces.Add(new() { Type = "pid", Path = input.PidNs ?? throw Fail.InvalidArgument(
                    "config.linux.security_context.namespace_options.pid: POD, but the pod sandbox was not created with namespace_options.pid POD") });
                break;
            case NamespaceMode.Target:
                // Another container's (kubectl debug --target): CreateContainer resolved it.
                namespaces.Add(new() { Type = "pid", Path = input.TargetPidNs ?? throw Fail.InvalidArgument(
                    "config.linux.security_context.namespace_options.target_id: required with pid TARGET") });
                break;
            default: // CONTAINER
                namespaces.Add(new() { Type = "pid" });
                break;
        }

        var devices = ContainerDevices.Map(c.Devices, privileged, p => input.Kernel.DeviceInfo(p));
        if (privileged && input.HostDevices is { Count: > 0 } host)
        {
            // The host's nodes first; a requested device at the same path wins.
            var requested = devices.Nodes.Select(n => n.Path).ToHashSet(StringComparer.Ordinal);
            devices = ([.. host.Where(h => !requested.Contains(h.Path)), .. devices.Nodes], devices.Rules);
        }
        return new Spec
        {
            Process = process,
            Root = new Root { Path = "rootfs", Readonly = sc.ReadonlyRootfs },
            Mounts = Mounts(input, privileged),
            Annotations = Annotations(input),
            Linux = new Linux
            {
                Namespaces = namespaces,
                CgroupsPath = input.CgroupsPath,
                Devices = devices.Nodes,
                Resources = WithPidsLimit((Resources(c.Linux?.Resources) ?? new LinuxResources()) with { Devices = devices.Rules }, input.PidsLimit),
                MaskedPaths = privileged ? [] : sc.MaskedPaths.Count > 0 ? [.. sc.MaskedPaths] : DefaultMaskedPaths,
                ReadonlyPaths = privileged ? [] : sc.ReadonlyPaths.Count > 0 ? [.. sc.ReadonlyPaths] : DefaultReadonlyPaths,
                Seccomp = privileged ? null : Seccomp(sc, caps),
                RootfsPropagation = "rslave",
            },
        };
    }

    /// <summary>A container joins its pod's user namespace; its own userns_options (kubelet sends the
    /// pod's) must agree with the pod: a container cannot leave the pod's user namespace nor
    /// have one the pod was not created with.</summary>
    private static void UserNamespace(Cri.V1.UserNamespace? requested, SpecInput input, List<LinuxNamespace> namespaces)
    {
        const string field = "config.linux.security_context.namespace_options.userns_options";
        var mappings = Pods.PodUserNamespace.Validate(requested, field);
        if (input.UserNs is null)
        {
            if (mappings is not null) throw Fail.InvalidArgument($"{field}: POD, but the pod sandbox was not created with a user namespace");
            return;
        }
        if (requested is { Mode: NamespaceMode.Node })
            throw Fail.InvalidArgument($"{field}: NODE, but its pod sandbox has a user namespace of its own");
        if (mappings is { } m && input.PodConfig.Linux?.SecurityContext?.NamespaceOptions?.UsernsOptions is { } pod
            && (!m.Uid.Equals(pod.Uids[0]) || !m.Gid.Equals(pod.Gids[0])))
            throw Fail.InvalidArgument($"{field}: the mappings differ from the pod sandbox's");
        namespaces.Add(new() { Type = "user", Path = input.UserNs });
    }

    /// <summary>Kubernetes' command/args over the image's entrypoint/cmd: command replaces the
    /// entrypoint (and drops the image's cmd); args replace the cmd.</summary>
    public static IReadOnlyList<string> Args(ContainerConfig c, Images.Oci.ContainerDefaults? image)
    {
        List<string> args;
        if (c.Command.Count > 0) args = [.. c.Command, .. c.Args];
        else args = [.. image?.Entrypoint ?? [], .. c.Args.Count > 0 ? c.Args : image?.Cmd ?? []];
        if (args.Count == 0) throw Fail.InvalidArgument("config.command: no command given and the image has neither entrypoint nor cmd");
        return args;
    }

    public static IReadOnlyList<string> Env(ContainerConfig c, Images.Oci.ContainerDefaults? image)
    {
        var env = new List<string>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        void Set(string kv)
        {
            var key = kv.Split('=', 2)[0];
            if (index.TryGetValue(key, out var i)) env[i] = kv;
            else { index[key] = env.Count; env.Add(kv); }
        }
        foreach (var kv in image?.Env ?? []) Set(kv);
        if (!index.ContainsKey("PATH")) Set(DefaultPath);
        for (var i = 0; i < c.Envs.Count; i++)
        {
            var kv = c.Envs[i];
            if (string.IsNullOrEmpty(kv.Key)) throw Fail.InvalidArgument($"config.envs[{i}].key: required");
            if (kv.Key.Contains('=') || kv.Key.Contains('\0'))
                throw Fail.InvalidArgument($"config.envs[{i}].key: '{kv.Key}' must not contain '=' or NUL");
            // KeyValue.value is bytes in runtime.v1 (it was string; the wire format is the same) and
            // the kubelet and crictl send UTF-8. The OCI config is JSON, which holds text only: bytes
            // that are not UTF-8 become U+FFFD here, as in containerd and CRI-O (Go's JSON encoder
            // replaces them the same way). A NUL would end the string at exec: refused.
            var value = kv.Value.ToStringUtf8();
            if (value.Contains('\0')) throw Fail.InvalidArgument($"config.envs[{i}].value: the value of {kv.Key} contains NUL");
            Set($"{kv.Key}={value}");
        }
        return env;
    }

    /// <summary>The container's capabilities, as containerd computes them: privileged and
    /// add_capabilities ALL give what the runtime holds (<paramref name="runtime"/>, its bounding
    /// set), not every capability the kernel knows, which a host lacking one could not grant;
    /// adds and drops then apply in that order (ALL plus drop CHOWN is all but CHOWN; drop ALL
    /// keeps only the explicit adds). The default set is trimmed to what the runtime holds too.
    /// An explicit add of a capability the runtime lacks is refused: containerd passes it on
    /// and runc's capset then fails the start with EPERM; here CreateContainer says which.</summary>
    public static IReadOnlyList<string> Capabilities(Capability? requested, bool privileged, IReadOnlyList<string> runtime)
    {
        if (privileged) return runtime;
        var set = DefaultCapabilities.Where(runtime.Contains).ToList();
        if (requested is null) return set;
        if (requested.AddCapabilities.Any(IsAll)) set = [.. runtime];
        foreach (var add in requested.AddCapabilities.Where(a => !IsAll(a)))
        {
            var name = CapName(add);
            if (!AllCapabilities.Contains(name)) throw Fail.InvalidArgument($"config.linux.security_context.capabilities.add_capabilities: unknown capability '{add}'");
            if (!runtime.Contains(name))
                throw Fail.FailedPrecondition($"config.linux.security_context.capabilities.add_capabilities: {name} is not in the runtime's bounding set, so no container on this host can have it");
            if (!set.Contains(name)) set.Add(name);
        }
        foreach (var drop in requested.DropCapabilities)
        {
            if (IsAll(drop))
            {
                // drop ALL keeps only what was explicitly added.
                set = [.. requested.AddCapabilities.Where(a => !IsAll(a)).Select(CapName).Distinct()];
                break;
            }
            set.Remove(CapName(drop));
        }
        return set;
    }

    private static bool IsAll(string cap) => cap.Equals("ALL", StringComparison.OrdinalIgnoreCase);

    private static string CapName(string cap)
    {
        var upper = cap.ToUpperInvariant();
        return upper.StartsWith("CAP_", StringComparison.Ordinal) ? upper : "CAP_" + upper;
    }

    private static List<OciMount> Mounts(SpecInput input, bool privileged)
    {
        var c = input.Config;
        var mounts = new List<OciMount>
        {
            new() { Destination = "/proc", Type = "proc", Source = "proc", Options = ["nosuid", "noexec", "nodev"] },
            new() { Destination = "/dev", Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            new() { Destination = "/dev/pts", Type = "devpts", Source = "devpts", Options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            new() { Destination = "/dev/mqueue", Type = "mqueue", Source = "mqueue", Options = ["nosuid", "noexec", "nodev"] },
            new() { Destination = "/sys", Type = "sysfs", Source = "sysfs", Options = ["nosuid", "noexec", "nodev", privileged ? "rw" : "ro"] },
            input.Shm is { } shm
                // As containerd and CRI-O: the pod's, so its containers share POSIX shared memory.
                ? new() { Destination = "/dev/shm", Type = "bind", Source = shm, Options = ["rbind", "rprivate", "nosuid", "noexec", "nodev", "rw"] }
                : new() { Destination = "/dev/shm", Type = "tmpfs", Source = "shm", Options = ["nosuid", "noexec", "nodev", "mode=1777", ShmSize(input.ShmBytes)] },
        };
        var userPaths = c.Mounts.Select(m => m.ContainerPath).ToHashSet(StringComparer.Ordinal);
        // The container's own cgroup, so runtimes (JVM, Go, .NET, nginx) read their limits: the shim
        // mounts it in the container's cgroup namespace (see the shim's CgroupMountPlan). Read-only
        // unless privileged, as containerd's default and WithPrivileged have it.
        if (!userPaths.Contains("/sys/fs/cgroup"))
            mounts.Insert(mounts.FindIndex(m => m.Destination == "/sys") + 1, new()
            {
                Destination = "/sys/fs/cgroup", Type = "cgroup", Source = "cgroup",
                Options = ["nosuid", "noexec", "nodev", "relatime", privileged ? "rw" : "ro"],
            });
        // The partition view: lxcfs's files over the kernel's, read-only, after /proc and /sys are mounted.
        if (input.ProcView is { } lxcfs)
        {
            foreach (var file in PartitionView.ProcView.Files)
            {
                var dest = "/" + file;
                if (userPaths.Contains(dest)) continue;
                mounts.Add(new() { Destination = dest, Type = "bind", Source = Path.Combine(lxcfs, file), Options = ["bind", "rprivate", "ro", "nosuid", "nodev", "noexec"] });
            }
        }
        foreach (var (file, dest) in new[] { ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf") })
        {
            if (userPaths.Contains(dest)) continue;
            var readOnly = c.Linux?.SecurityContext?.ReadonlyRootfs == true;
            mounts.Add(new() { Destination = dest, Type = "bind", Source = Path.Combine(input.PodDir, file), Options = ["rbind", "rprivate", readOnly ? "ro" : "rw"] });
        }
        for (var i = 0; i < c.Mounts.Count; i++)
        {
            var m = c.Mounts[i];
            if (string.IsNullOrEmpty(m.ContainerPath) || !m.ContainerPath.StartsWith('/'))
                throw Fail.InvalidArgument($"config.mounts[{i}].container_path: '{m.ContainerPath}' must be an absolute path");
            if (MountSources.BindSourceProblem(m.HostPath) is { } why)
                throw Fail.InvalidArgument($"config.mounts[{i}].host_path: {why}");
            if (!File.Exists(m.HostPath) && !Directory.Exists(m.HostPath))
                throw Fail.InvalidArgument($"config.mounts[{i}].host_path: '{m.HostPath}' does not exist");
            var options = new List<string> { "rbind" };
            options.Add(m.Propagation switch
            {
                MountPropagation.PropagationHostToContainer => "rslave",
                MountPropagation.PropagationBidirectional => "rshared",
                _ => "rprivate",
            });
            options.Add(m.Readonly ? "ro" : "rw");
            if (m.RecursiveReadOnly)
            {
                if (!m.Readonly) throw Fail.InvalidArgument($"config.mounts[{i}].recursive_read_only: requires readonly");
                // As containerd and CRI-O: a submount propagated in later (rslave/rshared) would
                // arrive writable, so the mount would not stay read-only all the way down.
                if (m.Propagation != MountPropagation.PropagationPrivate)
                    throw Fail.InvalidArgument($"config.mounts[{i}].propagation: recursive_read_only needs PROPAGATION_PRIVATE, got {m.Propagation}");
                options.Add("rro");
            }
            mounts.Add(new() { Destination = m.ContainerPath, Type = "bind", Source = m.HostPath, Options = options });
        }
        return mounts;
    }

    /// <summary>tmpfs's size option: in KiB when whole (the default reads "size=65536k", as it
    /// always has in our specs and containerd's), else in bytes.</summary>
    internal static string ShmSize(ulong bytes) => bytes % 1024 == 0 ? $"size={bytes / 1024}k" : $"size={bytes}";

    private static Dictionary<string, string> Annotations(SpecInput input)
    {
        var a = new Dictionary<string, string>(input.Config.Annotations, StringComparer.Ordinal)
        {
            ["io.kubernetes.cri.container-type"] = "container",
            ["io.kubernetes.cri.container-name"] = input.Config.Metadata?.Name ?? "",
            ["io.kubernetes.cri.sandbox-name"] = input.PodConfig.Metadata?.Name ?? "",
            ["io.kubernetes.cri.sandbox-namespace"] = input.PodConfig.Metadata?.Namespace ?? "",
            ["io.kubernetes.cri.sandbox-uid"] = input.PodConfig.Metadata?.Uid ?? "",
            ["io.kubernetes.cri.image-name"] = input.Config.Image?.Image ?? "",
        };
        if (input.Config.Stdin) a[CriRuntime.Shim.Client.ShimAnnotations.Stdin] = "true";
        // CreateContainer mounts the rootfs of a container in a user namespace on idmapped layers.
        if (input.UserNs is not null) a[CriRuntime.Shim.Client.ShimAnnotations.RootfsIdmapped] = "true";
        return a;
    }

    /// <summary>CRI resources in OCI form. Zero means "not set" in the CRI. Validated by
    /// <see cref="ResourceLimits.From"/>, which every RPC taking resources calls first.</summary>
    public static LinuxResources? Resources(LinuxContainerResources? r)
    {
        if (r is null) return null;
        return new LinuxResources
        {
            Cpu = new LinuxCpu
            {
                Shares = r.CpuShares > 0 ? (ulong)r.CpuShares : null,
                Quota = r.CpuQuota != 0 ? r.CpuQuota : null,
                Period = r.CpuPeriod > 0 ? (ulong)r.CpuPeriod : null,
                Cpus = r.CpusetCpus is { Length: > 0 } cpus ? cpus : null,
                Mems = r.CpusetMems is { Length: > 0 } mems ? mems : null,
            },
            Memory = r.MemoryLimitInBytes > 0 || r.MemorySwapLimitInBytes != 0
                ? new LinuxMemory
                {
                    Limit = r.MemoryLimitInBytes > 0 ? r.MemoryLimitInBytes : null,
                    Swap = r.MemorySwapLimitInBytes != 0 ? r.MemorySwapLimitInBytes : null,
                }
                : null,
            HugepageLimits = r.HugepageLimits.Count > 0 ? [.. r.HugepageLimits.Select(h => new LinuxHugepageLimit { PageSize = h.PageSize, Limit = h.Limit })] : null,
            Unified = r.Unified.Count > 0 ? new Dictionary<string, string>(r.Unified) : null,
        };
    }

    /// <summary>The runtime-wide pids limit (config runtime.pids_limit; the CRI has no per-container one).</summary>
    public static LinuxResources? WithPidsLimit(LinuxResources? r, long limit) =>
        limit <= 0 ? r : (r ?? new LinuxResources()) with { Pids = new LinuxPids { Limit = limit } };

    private static LinuxSeccomp? Seccomp(LinuxContainerSecurityContext sc, IReadOnlyList<string> caps)
    {
        var profile = sc.Seccomp;
        if (profile is null)
        {
            // The deprecated string field: "", "unconfined", "runtime/default", "docker/default", "localhost/<path>".
#pragma warning disable CS0612 // the deprecated field is still what older kubelets send
            var path = sc.SeccompProfilePath;
#pragma warning restore CS0612
            if (path is "" or "unconfined") return null;
            if (path is "runtime/default" or "docker/default") return DefaultSeccompProfile.Build(caps);
            if (path.StartsWith("localhost/", StringComparison.Ordinal)) return LoadLocalhost(path["localhost/".Length..]);
            throw Fail.InvalidArgument($"config.linux.security_context.seccomp_profile_path: '{path}' is not a known profile");
        }
        return profile.ProfileType switch
        {
            SecurityProfile.Types.ProfileType.RuntimeDefault => DefaultSeccompProfile.Build(caps),
            SecurityProfile.Types.ProfileType.Unconfined => null,
            SecurityProfile.Types.ProfileType.Localhost => LoadLocalhost(profile.LocalhostRef),
            _ => throw Fail.InvalidArgument($"config.linux.security_context.seccomp.profile_type: {profile.ProfileType} unknown"),
        };
    }

    private static LinuxSeccomp LoadLocalhost(string path)
    {
        if (!Path.IsPathRooted(path) || !File.Exists(path))
            throw Fail.InvalidArgument($"config.linux.security_context.seccomp.localhost_ref: '{path}' is not an existing absolute path");
        try
        {
            return Containers.Seccomp.SeccompProfiles.Parse(File.ReadAllBytes(path));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw Fail.InvalidArgument($"config.linux.security_context.seccomp.localhost_ref: '{path}': {e.Message}");
        }
    }
}
