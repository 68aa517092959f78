using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using static CriRuntime.Tests.Unit.Containers.SpecBuilderCapabilityTests;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>/dev/shm in a container's OCI spec: the pod's, bound in (containerd's and CRI-O's
/// layout), or, for a pod made before pods had one, a tmpfs of the container's own.</summary>
public class SpecBuilderShmTests
{
    [Fact]
    public void DevShm_IsABindOfThePodsShm_NosuidNodevNoexec()
    {
        var mounts = SpecBuilder.Build(Input(new LinuxContainerSecurityContext()) with { Shm = "/var/lib/criruntime/pods/p/shm" }).Mounts!;
        var shm = Assert.Single(mounts, m => m.Destination == "/dev/shm");
        Assert.Equal(("bind", "/var/lib/criruntime/pods/p/shm"), (shm.Type, shm.Source));
        Assert.Equal(["rbind", "rprivate", "nosuid", "noexec", "nodev", "rw"], shm.Options);
        Assert.True(mounts.ToList().FindIndex(m => m.Destination == "/dev/shm") > mounts.ToList().FindIndex(m => m.Destination == "/dev"));
    }

    [Fact]
    public void DevShm_WithoutAPodShm_IsATmpfsOfTheContainersOwn_OfThePodsSize()
    {
        var mounts = SpecBuilder.Build(Input(new LinuxContainerSecurityContext()) with { ShmBytes = 16 << 20 }).Mounts!;
        var shm = Assert.Single(mounts, m => m.Destination == "/dev/shm");
        Assert.Equal("tmpfs", shm.Type);
        Assert.Contains("size=16384k", shm.Options!);
    }
}
