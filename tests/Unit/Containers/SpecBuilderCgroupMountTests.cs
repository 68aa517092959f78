using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using static CriRuntime.Tests.Unit.Containers.SpecBuilderCapabilityTests;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>The /sys/fs/cgroup mount in a container's OCI spec.</summary>
public class SpecBuilderCgroupMountTests
{
    [Theory]
    [InlineData(false, "ro")]
    [InlineData(true, "rw")]
    public void CgroupMount_AtSysFsCgroup_AfterSys_ReadOnlyUnlessPrivileged(bool privileged, string mode)
    {
        var mounts = SpecBuilder.Build(Input(new LinuxContainerSecurityContext { Privileged = privileged })).Mounts!.ToList();
        var i = mounts.FindIndex(m => m.Destination == "/sys/fs/cgroup");
        Assert.True(i > mounts.FindIndex(m => m.Destination == "/sys"));
        Assert.Equal("cgroup", mounts[i].Type);
        Assert.Equal(["nosuid", "noexec", "nodev", "relatime", mode], mounts[i].Options);
    }

    [Fact]
    public void CgroupMount_GivesWayToAMountOfTheSamePath()
    {
        var input = Input(new LinuxContainerSecurityContext());
        input.Config.Mounts.Add(new Mount { ContainerPath = "/sys/fs/cgroup", HostPath = "/tmp" });
        var mounts = SpecBuilder.Build(input).Mounts!;
        Assert.Equal("bind", Assert.Single(mounts, m => m.Destination == "/sys/fs/cgroup").Type);
    }
}
