using CriRuntime.Containers;
using CriRuntime.Cri;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Pods;
using Google.Protobuf;

namespace CriRuntime.Tests.Unit.Pods;

/// <summary>Rules for what the kubelet and crictl send in pod and container configs: port
/// mappings, hostnames, log paths, env values.</summary>
public class PodConfigRulesTests
{
    private static PortMapping Port(int container, int host, Protocol p = Protocol.Tcp, string ip = "") =>
        new() { ContainerPort = container, HostPort = host, Protocol = p, HostIp = ip };

    [Fact]
    public void PortMappings_WithoutHostPort_AreLeftOutOfTheCniCapability()
    {
        var cni = PortMappings.ForCni([Port(8080, 0), Port(53, 5353, Protocol.Udp, "127.0.0.1"), Port(9090, 0)]);
        var only = Assert.Single(cni);
        Assert.Equal(new CriRuntime.Network.PortMappingArg(5353, 53, "udp", "127.0.0.1"), only);
    }

    [Theory]
    [InlineData(80, -1, "config.port_mappings[0].host_port")]
    [InlineData(80, 65536, "config.port_mappings[0].host_port")]
    [InlineData(0, 80, "config.port_mappings[0].container_port")]
    [InlineData(99999, 0, "config.port_mappings[0].container_port")]
    public void PortMappings_OutOfRange_AreInvalidArgumentNamingTheField(int container, int host, string field)
    {
        var e = Assert.Throws<CriException>(() => PortMappings.ForCni([Port(container, host)]));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void PortMappings_BadHostIp_IsInvalidArgument() =>
        Assert.Contains("host_ip", Assert.Throws<CriException>(() => PortMappings.ForCni([Port(80, 8080, ip: "not-an-ip")])).Message);

    [Fact]
    public void Hostname_Absent_IsTheNodes() =>
        Assert.Equal("node-1.example", PodHostname.For(new PodSandboxConfig(), () => "node-1.example"));

    [Theory]
    [InlineData("web-0")]
    [InlineData("web-0.sub.ns.svc.cluster.local")]
    [InlineData("A1")]
    public void Hostname_Valid_IsKept(string name) =>
        Assert.Equal(name, PodHostname.For(new PodSandboxConfig { Hostname = name }, () => "node"));

    [Theory]
    [InlineData("x234567890123456789012345678901234567890123456789012345678901234x")]
    [InlineData("under_score")]
    [InlineData("-dash")]
    [InlineData("dot..dot")]
    [InlineData("sp ace")]
    public void Hostname_TooLongOrInvalid_IsInvalidArgumentNamingConfigHostname(string name)
    {
        var e = Assert.Throws<CriException>(() => PodHostname.For(new PodSandboxConfig { Hostname = name }, () => "node"));
        Assert.Contains("config.hostname", e.Message);
    }

    private static string LogPath(string dir, string path) =>
        ContainerController.LogPath(new PodSandboxConfig { LogDirectory = dir }, new ContainerConfig { LogPath = path }, "/state/c1");

    [Fact]
    public void LogPath_IsUnderTheLogDirectory() =>
        Assert.Equal("/var/log/pods/ns_p_u/app/0.log", LogPath("/var/log/pods/ns_p_u", "app/0.log"));

    [Theory]
    [InlineData("../ns_p_u-evil/x.log")]
    [InlineData("../x.log")]
    [InlineData("app/../../x.log")]
    [InlineData("/etc/passwd")]
    [InlineData(".")]
    public void LogPath_LeavingTheDirectory_IsInvalidArgument(string path) =>
        Assert.Contains("config.log_path", Assert.Throws<CriException>(() => LogPath("/var/log/pods/ns_p_u", path)).Message);

    [Fact]
    public void LogPath_WithoutLogDirectory_IsTheContainersOwn() =>
        Assert.Equal("/state/c1/container.log", LogPath("", "app/0.log"));

    private static ContainerConfig WithEnv(string key, ByteString value) =>
        new() { Envs = { new KeyValue { Key = key, Value = value } } };

    [Fact]
    public void Env_ValueBytes_AreDecodedAsUtf8()
    {
        var env = SpecBuilder.Env(WithEnv("FOO", ByteString.CopyFromUtf8("bär=1")), null);
        Assert.Contains("FOO=bär=1", env);
    }

    [Fact]
    public void Env_NonUtf8Bytes_BecomeReplacementCharacters() =>
        Assert.Contains("RAW=a\uFFFDb", SpecBuilder.Env(WithEnv("RAW", ByteString.CopyFrom(0x61, 0xff, 0x62)), null));

    [Theory]
    [InlineData("", "config.envs[0].key")]
    [InlineData("A=B", "config.envs[0].key")]
    public void Env_BadKey_IsInvalidArgumentNamingTheEntry(string key, string field) =>
        Assert.Contains(field, Assert.Throws<CriException>(() => SpecBuilder.Env(WithEnv(key, ByteString.CopyFromUtf8("x")), null)).Message);
}
