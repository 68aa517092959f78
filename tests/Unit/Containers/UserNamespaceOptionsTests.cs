using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Pods;
using CriRuntime.Shim.Container;
using OciIdMapping = CriRuntime.Oci.IdMapping;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>CRI userns_options → the pod's user namespace, and the container's spec joining it;
/// the shim's own check of the OCI mappings it writes to uid_map/gid_map.</summary>
public class UserNamespaceOptionsTests
{
    private static UserNamespace Pod(params (uint Container, uint Host, uint Length)[] uids)
    {
        var u = new UserNamespace { Mode = NamespaceMode.Pod };
        foreach (var (container, host, length) in uids)
        {
            u.Uids.Add(new IDMapping { ContainerId = container, HostId = host, Length = length });
            u.Gids.Add(new IDMapping { ContainerId = container, HostId = host, Length = length });
        }
        return u;
    }

    private static string Refused(UserNamespace u)
    {
        var e = Assert.Throws<CriException>(() => PodUserNamespace.Validate(u));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        return e.Message;
    }

    [Fact]
    public void Pod_WithOneMappingFromZero_IsAccepted()
    {
        var m = PodUserNamespace.Validate(Pod((0, 200000, 65536)));
        Assert.NotNull(m);
        Assert.Equal(200000u, m.Value.Uid.HostId);
        Assert.Equal(65536u, m.Value.Gid.Length);
    }

    [Fact]
    public void NodeOrAbsent_MeansTheHostsUserNamespace()
    {
        Assert.Null(PodUserNamespace.Validate(null));
        Assert.Null(PodUserNamespace.Validate(new UserNamespace { Mode = NamespaceMode.Node }));
    }

    [Fact]
    public void InvalidMappings_AreRefused_NamingTheField()
    {
        Assert.Contains("userns_options.uids: exactly one mapping", Refused(Pod((0, 200000, 100), (100, 300000, 100))));
        Assert.Contains("userns_options.uids: exactly one mapping is supported, got 0", Refused(Pod()));
        Assert.Contains("userns_options.uids[0].container_id: must be 0", Refused(Pod((1, 200000, 65536))));
        Assert.Contains("userns_options.uids[0].length", Refused(Pod((0, 200000, 0))));
        Assert.Contains("overflows", Refused(Pod((0, uint.MaxValue - 10, 65536))));
        Assert.Contains("host_id: 0", Refused(Pod((0, 0, 65536))));
        Assert.Contains("userns_options.mode: Container is not supported", Refused(new UserNamespace { Mode = NamespaceMode.Container }));
        var node = Pod((0, 200000, 65536));
        node.Mode = NamespaceMode.Node;
        Assert.Contains("mode NODE", Refused(node));
    }

    private static SpecInput Input(UserNamespace? container, string? podUserNs, UserNamespace? pod = null) => new()
    {
        ContainerId = "c1",
        Config = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = "c" },
            Image = new ImageSpec { Image = "busybox" },
            Command = { "sleep", "1" },
            Linux = new LinuxContainerConfig
            {
                SecurityContext = new LinuxContainerSecurityContext
                {
                    NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Container, UsernsOptions = container },
                },
            },
        },
        PodConfig = new PodSandboxConfig
        {
            Metadata = new PodSandboxMetadata { Name = "p", Namespace = "n", Uid = "u" },
            Linux = new LinuxPodSandboxConfig
            {
                SecurityContext = new LinuxSandboxSecurityContext { NamespaceOptions = new NamespaceOption { UsernsOptions = pod } },
            },
        },
        User = new UserResolver.Resolved(0, 0, [], null),
        UserNs = podUserNs,
        PodDir = "/run/criruntime-test/pod",
        CgroupsPath = "/criruntime/p/c1",
        RuntimeCapabilities = SpecBuilder.AllCapabilities,
    };

    [Fact]
    public void Container_JoinsThePodsUserNamespace_ByPath()
    {
        var pod = Pod((0, 200000, 65536));
        var spec = SpecBuilder.Build(Input(pod, "/run/criruntime/pods/p1/ns/user", pod));
        var user = Assert.Single(spec.Linux!.Namespaces!, n => n.Type == "user");
        Assert.Equal("/run/criruntime/pods/p1/ns/user", user.Path);
        // Joined by path: the mappings are the namespace's; none in the spec to write.
        Assert.Null(spec.Linux.UidMappings);
    }

    [Fact]
    public void Container_WithoutUsernsOptions_StillJoinsThePods()
    {
        var spec = SpecBuilder.Build(Input(null, "/run/criruntime/pods/p1/ns/user", Pod((0, 200000, 65536))));
        Assert.Contains(spec.Linux!.Namespaces!, n => n.Type == "user" && n.Path == "/run/criruntime/pods/p1/ns/user");
    }

    [Fact]
    public void Container_ThatDisagreesWithItsPod_IsRefused()
    {
        var pod = Pod((0, 200000, 65536));
        var e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(Pod((0, 300000, 65536)), "/p/ns/user", pod)));
        Assert.Contains("differ from the pod sandbox's", e.Message);
        e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(pod, null)));
        Assert.Contains("POD, but the pod sandbox was not created with a user namespace", e.Message);
        e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(new UserNamespace { Mode = NamespaceMode.Node }, "/p/ns/user", pod)));
        Assert.Contains("NODE, but its pod sandbox has a user namespace", e.Message);
        Assert.DoesNotContain(SpecBuilder.Build(Input(null, null)).Linux!.Namespaces!, n => n.Type == "user");
    }

    [Fact]
    public void OciMappings_BecomeOneLinePerMapping_AndBadOnesAreRefusedByField()
    {
        Assert.Equal("0 200000 65536\n65536 1000 1\n", UserNamespaces.MapFile(
            [new OciIdMapping { ContainerId = 0, HostId = 200000, Size = 65536 }, new OciIdMapping { ContainerId = 65536, HostId = 1000, Size = 1 }], "uidMappings"));
        Assert.Contains("linux.gidMappings: required", Assert.Throws<InvalidDataException>(() => UserNamespaces.MapFile(null, "gidMappings")).Message);
        Assert.Contains("linux.uidMappings[0].size", Assert.Throws<InvalidDataException>(() => UserNamespaces.MapFile(
            [new OciIdMapping { ContainerId = 0, HostId = 1, Size = 0 }], "uidMappings")).Message);
        Assert.Contains("linux.uidMappings[1]: overlaps linux.uidMappings[0]", Assert.Throws<InvalidDataException>(() => UserNamespaces.MapFile(
            [new OciIdMapping { ContainerId = 0, HostId = 200000, Size = 100 }, new OciIdMapping { ContainerId = 50, HostId = 900000, Size = 10 }], "uidMappings")).Message);
    }
}
