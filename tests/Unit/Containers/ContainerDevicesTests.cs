using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Tests.Unit.Containers;

public class ContainerDevicesTests
{
    private static (uint, uint, uint)? Host(string path) => path switch
    {
        "/dev/zero" => (0x2000u | 0x1B6u, 1u, 5u),
        "/dev/sda" => (0x6000u | 0x1B0u, 8u, 0u),
        "/etc/passwd" => (0x8000u | 0x1A4u, 0u, 0u),
        _ => null,
    };

    [Fact]
    public void Devices_BecomeNodesAndAllowRules_AfterDenyAllAndTheDefaults()
    {
        var (nodes, rules) = ContainerDevices.Map(
            [new Device { HostPath = "/dev/zero", ContainerPath = "/dev/myzero", Permissions = "r" }, new Device { HostPath = "/dev/sda" }],
            privileged: false, Host);

        Assert.Equal(("c", "/dev/myzero", 1L, 5L, 0x1B6u), (nodes[0].Type, nodes[0].Path, nodes[0].Major, nodes[0].Minor, nodes[0].FileMode!.Value));
        Assert.Equal(("b", "/dev/sda"), (nodes[1].Type, nodes[1].Path));
        Assert.False(rules[0].Allow);
        Assert.Equal("a", rules[0].Type);
        Assert.Equal(("c", 1L, 5L, "r"), (rules[^2].Type, rules[^2].Major!.Value, rules[^2].Minor!.Value, rules[^2].Access));
        Assert.Equal(("b", 8L, 0L, "rwm"), (rules[^1].Type, rules[^1].Major!.Value, rules[^1].Minor!.Value, rules[^1].Access));
    }

    [Fact]
    public void Privileged_AllowsEveryDevice()
    {
        var (_, rules) = ContainerDevices.Map([new Device { HostPath = "/dev/zero" }], privileged: true, Host);
        var rule = Assert.Single(rules);
        Assert.True(rule.Allow);
        Assert.Equal("a", rule.Type);
    }

    [Theory]
    [InlineData("/dev/nope", "", "config.devices[0].host_path: '/dev/nope' does not exist")]
    [InlineData("/etc/passwd", "", "config.devices[0].host_path: '/etc/passwd' is not a character or block device")]
    [InlineData("/dev/zero", "rx", "config.devices[0].permissions")]
    public void BadDevices_AreInvalidArgument_NamingTheField(string host, string permissions, string message)
    {
        var e = Assert.Throws<CriException>(() => ContainerDevices.Map([new Device { HostPath = host, Permissions = permissions }], false, Host));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(message, e.Message);
    }
}
