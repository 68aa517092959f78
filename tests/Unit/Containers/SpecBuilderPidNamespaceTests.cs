using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>The container's pid namespace in its OCI spec, by the CRI's NamespaceMode.</summary>
public class SpecBuilderPidNamespaceTests
{
    private static SpecInput Input(NamespaceMode pid, string? podPidNs) => new()
    {
        ContainerId = "c1",
        Config = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = "c" },
            Image = new ImageSpec { Image = "busybox" },
            Command = { "sleep", "1" },
            Linux = new LinuxContainerConfig
            {
                SecurityContext = new LinuxContainerSecurityContext { NamespaceOptions = new NamespaceOption { Pid = pid } },
            },
        },
        PodConfig = new PodSandboxConfig { Metadata = new PodSandboxMetadata { Name = "p", Namespace = "n", Uid = "u" } },
        User = new UserResolver.Resolved(0, 0, [], null),
        PidNs = podPidNs,
        PodDir = "/run/criruntime-test/pod",
        CgroupsPath = "/criruntime/p/c1",
        RuntimeCapabilities = SpecBuilder.AllCapabilities,
    };

    private static CriRuntime.Oci.LinuxNamespace? PidNamespace(SpecInput input) =>
        SpecBuilder.Build(input).Linux!.Namespaces!.SingleOrDefault(n => n.Type == "pid");

    [Fact]
    public void Pod_JoinsThePodsPinnedPidNamespace()
    {
        var ns = PidNamespace(Input(NamespaceMode.Pod, "/run/criruntime/pods/p1/ns/pid"));
        Assert.NotNull(ns);
        Assert.Equal("/run/criruntime/pods/p1/ns/pid", ns.Path);
    }

    [Fact]
    public void Pod_InAPodWithoutASharedPidNamespace_IsRefused_NamingTheField()
    {
        var e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(NamespaceMode.Pod, null)));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("namespace_options.pid", e.Message);
    }

    [Fact]
    public void Container_GetsANewPidNamespace_EvenInAPodThatSharesOne()
    {
        var ns = PidNamespace(Input(NamespaceMode.Container, "/run/criruntime/pods/p1/ns/pid"));
        Assert.NotNull(ns);
        Assert.True(string.IsNullOrEmpty(ns.Path));
    }

    [Fact]
    public void NoNamespaceOptions_GetsANewPidNamespace_ThoughPodIsTheProtobufDefault()
    {
        var input = Input(NamespaceMode.Pod, "/run/criruntime/pods/p1/ns/pid");
        input.Config.Linux.SecurityContext.NamespaceOptions = null;
        var ns = PidNamespace(input);
        Assert.NotNull(ns);
        Assert.True(string.IsNullOrEmpty(ns.Path));
    }

    [Fact]
    public void Node_UsesTheHostsPidNamespace()
    {
        Assert.Null(PidNamespace(Input(NamespaceMode.Node, null)));
    }

    [Fact]
    public void Target_JoinsTheTargetContainersPidNamespace_NotThePods()
    {
        var ns = PidNamespace(Input(NamespaceMode.Target, "/run/criruntime/pods/p1/ns/pid") with { TargetPidNs = "/proc/4242/ns/pid" });
        Assert.NotNull(ns);
        Assert.Equal("/proc/4242/ns/pid", ns.Path);
    }

    [Fact]
    public void Target_Unresolved_IsRefused_NamingTheField()
    {
        var e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(NamespaceMode.Target, null)));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("namespace_options.target_id", e.Message);
    }
}
