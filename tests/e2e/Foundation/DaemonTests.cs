using System.Net.Sockets;
using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Foundation;

/// <summary>The daemon over its real unix socket: the RPCs every client calls first, the socket's
/// ownership rules and the configuration files.</summary>
public class DaemonTests
{
    [Fact]
    public async Task Version_ReportsCriruntimeSpeakingV1()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var v = await c.Runtime.VersionAsync(new VersionRequest { Version = "v1" });
        Assert.Equal("criruntime", v.RuntimeName);
        Assert.Equal("v1", v.RuntimeApiVersion);
        Assert.Equal("0.1.0", v.Version);
        Assert.Matches(@"^\d+\.\d+\.\d+", v.RuntimeVersion);
    }

    [Fact]
    public async Task Status_RuntimeReady_NetworkNotReadyWithReason_WhenNoCniConfig()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var s = await c.Runtime.StatusAsync(new StatusRequest());
        var runtime = s.Status.Conditions.Single(x => x.Type == "RuntimeReady");
        var network = s.Status.Conditions.Single(x => x.Type == "NetworkReady");
        Assert.True(runtime.Status);
        Assert.False(network.Status);
        Assert.Equal("NetworkPluginNotReady", network.Reason);
        Assert.Contains(d.CniConfDir, network.Message);
        Assert.Empty(s.Info); // verbose info only when asked
    }

    [Fact]
    public async Task Status_NetworkReady_OnceAUsableCniConfigAppears()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        // A config whose plugin does not exist is not usable.
        await File.WriteAllTextAsync(Path.Combine(d.CniConfDir, "05-bad.conflist"),
            """{"cniVersion":"1.0.0","name":"bad","plugins":[{"type":"no-such-plugin"}]}""");
        var bad = (await c.Runtime.StatusAsync(new StatusRequest())).Status.Conditions.Single(x => x.Type == "NetworkReady");
        Assert.False(bad.Status);
        Assert.Contains("no-such-plugin", bad.Message);
        // Debian's containernetworking-plugins puts bridge in /usr/lib/cni (one of the default plugin dirs).
        await File.WriteAllTextAsync(Path.Combine(d.CniConfDir, "10-test.conflist"),
            """{"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"bridge","bridge":"cni-test0","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}},{"type":"loopback"}]}""");
        var s = await c.Runtime.StatusAsync(new StatusRequest { Verbose = true });
        Assert.True(s.Status.Conditions.Single(x => x.Type == "NetworkReady").Status);
        using var network = JsonDocument.Parse(s.Info["network"]);
        Assert.Equal("testnet", network.RootElement.GetProperty("networkName").GetString());
    }

    [Fact]
    public async Task StatusVerbose_ReportsTheEffectiveConfigAsJson()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var s = await c.Runtime.StatusAsync(new StatusRequest { Verbose = true });
        using var config = JsonDocument.Parse(s.Info["config"]);
        Assert.Equal(d.Root, config.RootElement.GetProperty("root").GetString());
        Assert.Equal(d.Socket, config.RootElement.GetProperty("socket").GetString());
        Assert.Equal(d.CniConfDir, config.RootElement.GetProperty("cni").GetProperty("confDir").GetString());
    }

    [Fact]
    public async Task RuntimeConfig_ReportsTheConfiguredCgroupDriver()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var r = await c.Runtime.RuntimeConfigAsync(new RuntimeConfigRequest());
        Assert.Equal(CgroupDriver.Cgroupfs, r.Linux.CgroupDriver);
    }

    [Fact]
    public async Task UpdateRuntimeConfig_KeepsPodCidr_AcrossRestart_AndRejectsGarbage()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using (var c = d.Client())
        {
            await c.Runtime.UpdateRuntimeConfigAsync(new UpdateRuntimeConfigRequest
            {
                RuntimeConfig = new Cri.V1.RuntimeConfig { NetworkConfig = new NetworkConfig { PodCidr = "10.244.1.0/24" } },
            });
            var e = await Assert.ThrowsAsync<RpcException>(async () => await c.Runtime.UpdateRuntimeConfigAsync(new UpdateRuntimeConfigRequest
            {
                RuntimeConfig = new Cri.V1.RuntimeConfig { NetworkConfig = new NetworkConfig { PodCidr = "10.244.1.0/99" } },
            }));
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            Assert.Contains("pod_cidr", e.Status.Detail);
        }
        await d.RestartAsync();
        using (var c = d.Client())
        {
            var s = await c.Runtime.StatusAsync(new StatusRequest { Verbose = true });
            Assert.Equal("10.244.1.0/24", s.Info["podCIDR"]);
        }
    }

    /// <summary>Every RPC of the CRI version in cri/ is served; a client of a newer CRI calling one
    /// we do not know gets Unimplemented (what the kubelet takes as "not supported"), not a failure.</summary>
    [Fact]
    public async Task AnRpcOfANewerCri_AnswersUnimplemented()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();
        var raw = Marshallers.Create((byte[] b) => b, b => b);
        var method = new Method<byte[], byte[]>(MethodType.Unary, "runtime.v1.RuntimeService", "CheckpointNode", raw, raw);

        var e = await Assert.ThrowsAsync<RpcException>(async () => await c.Invoker.AsyncUnaryCall(method, null, new CallOptions(), []));

        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
        // The daemon still serves.
        Assert.True((await c.Runtime.StatusAsync(new StatusRequest())).Status.Conditions.Count > 0);
    }

    [Fact]
    public async Task Socket_IsMode0660()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        var mode = File.GetUnixFileMode(d.Socket);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, mode);
    }

    [Fact]
    public async Task SecondDaemon_OnTheSameSocket_IsRefused_AndTheFirstKeepsServing()
    {
        using var first = new DaemonProcess();
        await first.StartAsync();
        var (code, _, stderr) = await DaemonProcess.RunCliAsync("serve", "--config", first.ConfigFile, "--socket", first.Socket,
            "--root", Path.Combine(first.Dir, "root2"), "--state", Path.Combine(first.Dir, "state2"));
        Assert.Equal(2, code);
        Assert.Contains(first.Socket, stderr);
        Assert.Contains("another criruntime daemon", stderr);
        using var c = first.Client();
        Assert.Equal("criruntime", (await c.Runtime.VersionAsync(new VersionRequest())).RuntimeName);
    }

    [Fact]
    public async Task LiveForeignListener_OnTheSocketPath_IsRefused_NotReplaced()
    {
        using var d = new DaemonProcess();
        Directory.CreateDirectory(Path.GetDirectoryName(d.Socket)!);
        // Something that is not a criruntime daemon (it holds no lock) is serving on the path.
        using var foreign = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        foreign.Bind(new UnixDomainSocketEndPoint(d.Socket));
        foreign.Listen();
        var (code, _, stderr) = await DaemonProcess.RunCliAsync("serve", "--config", d.ConfigFile, "--socket", d.Socket, "--root", d.Root, "--state", d.State);
        Assert.Equal(2, code);
        Assert.Contains("a live process is already listening", stderr);
        Assert.True(File.Exists(d.Socket));
    }

    /// <summary>kill -9 leaves the socket file behind (a stale socket): the next start replaces it.</summary>
    [Fact]
    public async Task KilledDaemon_CanBeRestarted_OnItsOwnSocket()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        await d.KillAsync();
        Assert.True(File.Exists(d.Socket)); // kill -9 leaves the socket file
        await d.StartAsync();
        using var c = d.Client();
        Assert.True((await c.Runtime.StatusAsync(new StatusRequest())).Status.Conditions.Single(x => x.Type == "RuntimeReady").Status);
    }
}
