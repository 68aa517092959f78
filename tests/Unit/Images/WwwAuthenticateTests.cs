using CriRuntime.Images.Registry;

namespace CriRuntime.Tests.Unit.Images;

public class WwwAuthenticateTests
{
    [Fact]
    public void Parse_DockerHubBearerChallenge()
    {
        var c = Assert.Single(WwwAuthenticate.Parse(
            """Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull" """));
        Assert.True(c.IsBearer);
        Assert.Equal("https://auth.docker.io/token", c["realm"]);
        Assert.Equal("registry.docker.io", c["service"]);
        Assert.Equal("repository:library/busybox:pull", c["scope"]);
    }

    [Fact]
    public void Parse_BasicChallenge_CaseInsensitiveNames()
    {
        var c = Assert.Single(WwwAuthenticate.Parse("basic Realm=\"cri-test-registry\""));
        Assert.True(c.IsBasic);
        Assert.Equal("cri-test-registry", c["realm"]);
    }

    [Fact]
    public void Parse_MultipleChallenges_TokensAndEscapes()
    {
        var cs = WwwAuthenticate.Parse("""Basic realm="a \"quoted\" realm", Bearer realm="https://t/x",error=invalid_token, scope="a:b:pull,push" """);
        Assert.Equal(2, cs.Count);
        Assert.Equal("a \"quoted\" realm", cs[0]["realm"]);
        Assert.Equal("invalid_token", cs[1]["error"]);
        Assert.Equal("a:b:pull,push", cs[1]["scope"]);
    }

    [Fact]
    public void Parse_EmptyOrGarbage_GivesNothingOrSchemeOnly()
    {
        Assert.Empty(WwwAuthenticate.Parse(""));
        var c = Assert.Single(WwwAuthenticate.Parse("Negotiate"));
        Assert.Empty(c.Parameters);
    }
}
