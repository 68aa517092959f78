using System.Text.Json.Nodes;
using CriRuntime.Migration;
using CriRuntime.Network;

namespace CriRuntime.Tests.Unit.Network;

/// <summary>A migration target asks its CNI plugins for the source pod's address (the `ips`
/// capability), and compares what it got.</summary>
public class CniIpsTests
{
    private static PodNetworkRequest Request(IReadOnlyList<string>? ips) => new("p", "/run/netns/p", "n", "ns", "uid", [], Ips: ips);

    [Fact]
    public void RuntimeConfig_CarriesTheRequestedIps_OnlyWhenThereAreSome()
    {
        var rc = CniNetwork.RuntimeConfigFor(Request(["10.1.2.3"]));

        Assert.Equal("""["10.1.2.3"]""", rc["ips"]!.ToJsonString());
        Assert.Null(CniNetwork.RuntimeConfigFor(Request([]))["ips"]);
        Assert.Null(CniNetwork.RuntimeConfigFor(Request(null))["ips"]);
    }

    [Theory]
    [InlineData(new[] { "10.1.2.3" }, new[] { "10.1.2.3" }, true)]
    [InlineData(new[] { "10.1.2.3", "fd00::3" }, new[] { "fd00:0::3", "10.1.2.3" }, true)]
    [InlineData(new[] { "10.1.2.3" }, new[] { "10.1.2.4" }, false)]
    [InlineData(new[] { "10.1.2.3" }, new[] { "10.1.2.3", "fd00::3" }, false)]
    // No address is not "the same address".
    [InlineData(new string[0], new string[0], false)]
    public void SameIps_ComparesAddressesInAnyOrderAndSpelling(string[] a, string[] b, bool same) =>
        Assert.Equal(same, MigrationController.SameIps(a, b));
}
