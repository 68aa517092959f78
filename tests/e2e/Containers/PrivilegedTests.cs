using System.Globalization;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>Privileged containers and add_capabilities ALL on a host whose bounding set lacks a
/// capability (this project's test host has no CAP_SYS_RESOURCE): they get what the runtime
/// holds, read from inside the container, and start.</summary>
[Collection(RegistryCollection.Name)]
public class PrivilegedTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>A pod the way the kubelet sends one for a pod with a privileged container.</summary>
    internal static void KubeletPod(PodSandboxConfig pod, bool privileged)
    {
        pod.Labels.Add("io.kubernetes.pod.name", pod.Metadata.Name);
        pod.Labels.Add("io.kubernetes.pod.namespace", pod.Metadata.Namespace);
        pod.Labels.Add("io.kubernetes.pod.uid", pod.Metadata.Uid);
        pod.Annotations.Add("kubernetes.io/config.source", "api");
        pod.DnsConfig = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "e2e.svc.cluster.local", "svc.cluster.local" }, Options = { "ndots:5" } };
        // (No port_mappings: the kubelet sends one per containerPort, host_port 0 included, and
        // those reach the portmap plugin here, which refuses port 0: not this test's subject.)
        pod.Linux.SecurityContext = new LinuxSandboxSecurityContext
        {
            Privileged = privileged,
            NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
            SeccompProfilePath = "",
        };
    }

    /// <summary>A container the way the kubelet sends it: privileged ones without masked or
    /// read-only paths and unconfined, the others with the runtime default seccomp profile.</summary>
    internal static ContainerConfig KubeletContainer(string name, string image, bool privileged, Capability? caps, params string[] command)
    {
        var config = Container(name, image, command);
        config.Labels.Add("io.kubernetes.container.name", name);
        config.Annotations.Add("io.kubernetes.container.restartCount", "0");
        config.Envs.Add(new KeyValue { Key = "KUBERNETES_SERVICE_HOST", Value = Google.Protobuf.ByteString.CopyFromUtf8("10.96.0.1") });
        config.Linux.Resources = new LinuxContainerResources { CpuShares = 2, OomScoreAdj = 1000 };
        config.Linux.SecurityContext = new LinuxContainerSecurityContext
        {
            Privileged = privileged,
            Capabilities = caps,
            NamespaceOptions = new NamespaceOption { Network = NamespaceMode.Pod, Pid = NamespaceMode.Container, Ipc = NamespaceMode.Pod },
            Seccomp = new SecurityProfile { ProfileType = privileged ? SecurityProfile.Types.ProfileType.Unconfined : SecurityProfile.Types.ProfileType.RuntimeDefault },
        };
        return config;
    }

    internal static string StatusField(string status, string field) =>
        status.Split('\n').First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim();

    private static ulong Mask(string hex) => ulong.Parse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    /// <summary>The daemon's bounding set, from the host.</summary>
    private static string DaemonBounding(DaemonProcess d) => StatusField(File.ReadAllText($"/proc/{d.Pid}/status"), "CapBnd");

    [Fact]
    public async Task Privileged_Container_GetsTheRuntimesBoundingSet()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("priv", p => KubeletPod(p, privileged: true));
        var id = await n.C.StartNewAsync(podId, pod, KubeletContainer("priv", n.Busybox, privileged: true, null, "sleep", "3600"));

        var daemon = DaemonBounding(n.D);
        var status = await n.C.ExecOkAsync(id, "cat", "/proc/1/status"); // the container's own command
        Assert.Equal(daemon, StatusField(status, "CapBnd"));
        Assert.Equal(daemon, StatusField(status, "CapEff"));
        Assert.Equal(daemon, StatusField(status, "CapPrm"));
        // This host's runtime lacks CAP_SYS_RESOURCE (bit 24): so does the container.
        Assert.Equal(Mask(daemon) & (1UL << 24), Mask(StatusField(status, "CapBnd")) & (1UL << 24));

        // As under runc: /sys and /sys/fs/cgroup writable, no masked paths, every device allowed.
        var mounts = await n.C.ExecOkAsync(id, "cat", "/proc/self/mounts");
        Assert.Contains(mounts.Split('\n'), l => l.StartsWith("sysfs /sys sysfs rw,", StringComparison.Ordinal));
        Assert.Contains(mounts.Split('\n'), l => l.Contains(" /sys/fs/cgroup/memory cgroup rw,", StringComparison.Ordinal));
        Assert.DoesNotContain(mounts.Split('\n'), l => l.Contains(" /proc/kcore ", StringComparison.Ordinal)); // not masked
        Assert.Equal("a *:* rwm", (await n.C.ExecOkAsync(id, "cat", "/sys/fs/cgroup/devices/devices.list")).Trim());

        // The host's device nodes, as containerd and CRI-O give a privileged container: every
        // character and block device of the host's /dev (top level here) with its numbers.
        const string devices = "for f in /dev/*; do [ -c \"$f\" ] || [ -b \"$f\" ] && echo \"${f#/dev/}\"; done; true";
        var host = Shell.Run("sh", "-c", devices).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(f => f is not ("console" or "ptmx")).ToList();
        Assert.NotEmpty(host);
        var inside = (await n.C.ExecOkAsync(id, "sh", "-c", devices)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Empty(host.Except(inside));
        var loop = host.FirstOrDefault(h => h.StartsWith("loop", StringComparison.Ordinal));
        if (loop is not null)
            Assert.Equal(Stat($"/dev/{loop}"), (await n.C.ExecOkAsync(id, "stat", "-c", "%t:%T", $"/dev/{loop}")).Trim());
    }

    /// <summary>A device node's major:minor in hex, as `stat -c %t:%T` prints them.</summary>
    private static string Stat(string path) => Shell.Run("stat", "-c", "%t:%T", path).Trim();

    [Fact]
    public async Task AddAll_Container_GetsTheRuntimesBoundingSet_MinusItsDrops()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("addall", p => KubeletPod(p, privileged: false));
        var all = await n.C.StartNewAsync(podId, pod, KubeletContainer("all", n.Busybox, privileged: false,
            new Capability { AddCapabilities = { "ALL" } }, "sleep", "3600"));
        var allButChown = await n.C.StartNewAsync(podId, pod, KubeletContainer("allbutchown", n.Busybox, privileged: false,
            new Capability { AddCapabilities = { "ALL" }, DropCapabilities = { "CHOWN" } }, "sleep", "3600"));

        var daemon = DaemonBounding(n.D);
        var status = await n.C.ExecOkAsync(all, "cat", "/proc/1/status");
        Assert.Equal(daemon, StatusField(status, "CapBnd"));
        Assert.Equal(daemon, StatusField(status, "CapEff"));
        var dropped = Mask(StatusField(await n.C.ExecOkAsync(allButChown, "cat", "/proc/1/status"), "CapEff"));
        Assert.Equal(Mask(daemon) & ~1UL, dropped); // CAP_CHOWN is bit 0
    }

    [Fact]
    public async Task ExplicitAdd_OfACapabilityTheRuntimeLacks_FailsCreateContainer_NamingIt()
    {
        await using var n = await TestNode.StartAsync(_registry);
        var (podId, pod) = await n.RunPodAsync("addmissing", p => KubeletPod(p, privileged: false));
        var bounding = Mask(DaemonBounding(n.D));
        // CAP_SYS_RESOURCE is bit 24; on a host with every capability, adding it simply works.
        var config = KubeletContainer("add", n.Busybox, privileged: false, new Capability { AddCapabilities = { "SYS_RESOURCE" } }, "sleep", "3600");
        if ((bounding & (1UL << 24)) != 0)
        {
            var id = await n.C.StartNewAsync(podId, pod, config);
            Assert.NotEqual(0UL, Mask(StatusField(await n.C.ExecOkAsync(id, "cat", "/proc/1/status"), "CapEff")) & (1UL << 24));
            return;
        }
        var e = await Assert.ThrowsAsync<RpcException>(async () => await n.C.CreateAsync(podId, pod, config));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("add_capabilities", e.Status.Detail);
        Assert.Contains("CAP_SYS_RESOURCE", e.Status.Detail);
    }
}
