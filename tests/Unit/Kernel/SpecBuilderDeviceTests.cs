using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Interop;
using static CriRuntime.Tests.Unit.Containers.SpecBuilderCapabilityTests;

namespace CriRuntime.Tests.Unit.Kernel;

/// <summary>SpecBuilder asks the host kernel for a requested device's type and number; with the
/// recording kernel the devices need not exist.</summary>
public sealed class SpecBuilderDeviceTests
{
    [Fact]
    public void Build_TakesTheDevicesTypeAndNumber_FromTheKernel()
    {
        var k = new RecordingHostKernel();
        k.Devices["/dev/fake0"] = (Libc.S_IFCHR | 0x1B6, 10, 200);
        var input = Input(new LinuxContainerSecurityContext()) with { Kernel = k };
        input.Config.Devices.Add(new Device { HostPath = "/dev/fake0", ContainerPath = "/dev/net/tun", Permissions = "rw" });

        var spec = SpecBuilder.Build(input);

        var node = Assert.Single(spec.Linux!.Devices!);
        Assert.Equal(("c", "/dev/net/tun", 10L, 200L, 0x1B6u), (node.Type, node.Path, node.Major, node.Minor, node.FileMode!.Value));
        Assert.Contains(spec.Linux.Resources!.Devices!, r => r is { Allow: true, Type: "c", Major: 10, Minor: 200, Access: "rw" });
        Assert.Empty(k.Calls); // a question, nothing changed
    }

    [Fact]
    public void Build_RefusesADeviceTheKernelDoesNotHave()
    {
        var k = new RecordingHostKernel();
        k.Devices["/dev/nothing"] = null;
        var input = Input(new LinuxContainerSecurityContext()) with { Kernel = k };
        input.Config.Devices.Add(new Device { HostPath = "/dev/nothing" });

        var e = Assert.Throws<CriException>(() => SpecBuilder.Build(input));
        Assert.Contains("config.devices[0].host_path", e.Message);
    }
}
