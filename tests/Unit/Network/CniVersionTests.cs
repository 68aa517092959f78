using System.Text.Json.Nodes;
using CriRuntime.Network;

namespace CriRuntime.Tests.Unit.Network;

/// <summary>Which CNI spec version the runtime speaks with a network config.</summary>
public class CniVersionTests
{
    private static string Version(string json) => CniNetwork.Version(JsonNode.Parse(json)!.AsObject());

    [Theory]
    [InlineData("""{"cniVersion":"1.0.0"}""", "1.0.0")]
    [InlineData("""{"cniVersion":"0.3.1"}""", "0.3.1")]
    [InlineData("""{}""", "0.4.0")]
    // cniVersions (1.1.0): the highest this runtime also speaks, whatever the order and cniVersion say.
    [InlineData("""{"cniVersion":"1.0.0","cniVersions":["1.1.0","0.4.0","1.0.0"]}""", "1.1.0")]
    [InlineData("""{"cniVersion":"1.0.0","cniVersions":["2.0.0","0.4.0"]}""", "0.4.0")]
    // None in common: cniVersion, for the plugins to refuse with their own message.
    [InlineData("""{"cniVersion":"1.0.0","cniVersions":["2.0.0"]}""", "1.0.0")]
    public void PicksTheVersion(string config, string expected) => Assert.Equal(expected, Version(config));
}
