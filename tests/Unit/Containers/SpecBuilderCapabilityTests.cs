using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>Capabilities in a container's OCI spec, for a runtime whose bounding set lacks
/// CAP_SYS_RESOURCE (like this project's test host).</summary>
public class SpecBuilderCapabilityTests
{
    private static readonly IReadOnlyList<string> HostWithoutSysResource = [.. SpecBuilder.AllCapabilities.Where(c => c != "CAP_SYS_RESOURCE")];

    internal static SpecInput Input(LinuxContainerSecurityContext sc, IReadOnlyList<string>? runtimeCaps = null) => new()
    {
        ContainerId = "c1",
        Config = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = "c" },
            Image = new ImageSpec { Image = "busybox" },
            Command = { "sleep", "1" },
            Linux = new LinuxContainerConfig { SecurityContext = sc },
        },
        PodConfig = new PodSandboxConfig { Metadata = new PodSandboxMetadata { Name = "p", Namespace = "n", Uid = "u" } },
        User = new UserResolver.Resolved(0, 0, [], null),
        PodDir = "/run/criruntime-test/pod",
        CgroupsPath = "/criruntime/p/c1",
        RuntimeCapabilities = runtimeCaps ?? HostWithoutSysResource,
    };

    private static CriRuntime.Oci.LinuxCapabilities Caps(LinuxContainerSecurityContext sc) => SpecBuilder.Build(Input(sc)).Process!.Capabilities!;

    [Fact]
    public void Privileged_GetsTheRuntimesBoundingSet_NotEveryKnownCapability()
    {
        var caps = Caps(new LinuxContainerSecurityContext { Privileged = true });
        Assert.Equal(HostWithoutSysResource, caps.Bounding);
        Assert.Equal(HostWithoutSysResource, caps.Permitted);
        Assert.Equal(HostWithoutSysResource, caps.Effective);
        Assert.DoesNotContain("CAP_SYS_RESOURCE", caps.Bounding!);
    }

    [Fact]
    public void AddAll_GetsTheRuntimesBoundingSet_ThenDropsApply()
    {
        var caps = Caps(new LinuxContainerSecurityContext { Capabilities = new Capability { AddCapabilities = { "ALL" }, DropCapabilities = { "CHOWN" } } });
        Assert.Equal(HostWithoutSysResource.Where(c => c != "CAP_CHOWN"), caps.Bounding);
    }

    [Fact]
    public void ExplicitAdd_OfACapabilityTheRuntimeLacks_IsRefused_NamingTheFieldAndCapability()
    {
        var e = Assert.Throws<CriException>(() => Caps(new LinuxContainerSecurityContext { Capabilities = new Capability { AddCapabilities = { "SYS_RESOURCE" } } }));
        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.Contains("add_capabilities", e.Message);
        Assert.Contains("CAP_SYS_RESOURCE", e.Message);
        // Also next to ALL: it is still an explicit ask.
        Assert.Throws<CriException>(() => Caps(new LinuxContainerSecurityContext { Capabilities = new Capability { AddCapabilities = { "ALL", "CAP_SYS_RESOURCE" } } }));
    }

    [Fact]
    public void Default_IsTrimmedToWhatTheRuntimeHolds()
    {
        var caps = SpecBuilder.Build(Input(new LinuxContainerSecurityContext(), [.. SpecBuilder.DefaultCapabilities.Where(c => c != "CAP_AUDIT_WRITE")])).Process!.Capabilities!;
        Assert.DoesNotContain("CAP_AUDIT_WRITE", caps.Bounding!);
        Assert.Contains("CAP_CHOWN", caps.Bounding!);
    }

    [Fact]
    public void RuntimeCapabilities_Parse_ReadsCapBnd()
    {
        var caps = RuntimeCapabilities.Parse("Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n");
        Assert.Equal(HostWithoutSysResource, caps);
        Assert.Equal(["CAP_CHOWN", "CAP_SYS_ADMIN"], RuntimeCapabilities.FromMask((1UL << 0) | (1UL << 21) | (1UL << 60)));
    }
}
