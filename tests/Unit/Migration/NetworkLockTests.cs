using CriRuntime.Config;
using CriRuntime.Migration;
using CriRuntime.Network;
using CriRuntime.Tests.Unit.Kernel;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Migration;

/// <summary>The source pod's network lock: its links on the node's side, from the cached CNI
/// result, set down and up again through the kernel boundary.</summary>
public sealed class NetworkLockTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("netlock-").FullName;
    private readonly RecordingHostKernel _kernel = new();
    private readonly NetworkLock _lock;

    public NetworkLockTests()
    {
        var config = new CriRuntimeConfig { Root = _root, State = Path.Combine(_root, "state") };
        _lock = new NetworkLock(new CniNetwork(config, new CniConfigProbe(config), new CniPlugins(config), NullLogger<CniNetwork>.Instance), _kernel);
        Directory.CreateDirectory(Path.Combine(_root, "cni"));
        // What the bridge plugin answers: the bridge, the host end of the veth, eth0 in the pod.
        File.WriteAllText(Path.Combine(_root, "cni", "pod1.json"), """
            {"podId":"pod1","netnsPath":"/run/netns/p","ifName":"eth0","args":"","configFile":"/etc/cni/10.conflist",
             "networkConfig":"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"plugins\":[{\"type\":\"bridge\",\"bridge\":\"cni0\"},{\"type\":\"loopback\"}]}",
             "runtimeConfig":"{}",
             "result":"{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"cni0\",\"mac\":\"aa\"},{\"name\":\"veth1234\",\"mac\":\"bb\"},{\"name\":\"eth0\",\"mac\":\"cc\",\"sandbox\":\"/run/netns/p\"}],\"ips\":[{\"address\":\"10.1.2.3/24\",\"interface\":2}]}"}
            """);
    }

    [Fact]
    public void Links_AreThePodsInterfacesOnTheNodesSide_NotTheBridgeNorEth0()
    {
        Assert.Equal(["veth1234"], _lock.Links("pod1"));
        Assert.Empty(_lock.Links("no-such-pod"));
    }

    [Fact]
    public void Lock_SetsTheLinksDown_Unlock_UpAgain_AndALinkThatIsGoneNeedsNothing()
    {
        _lock.Lock(["veth1234"]);
        _kernel.Failures["link gone"] = 19; // ENODEV: the pod was removed with its veth

        _lock.Unlock(["veth1234", "gone"]);

        Assert.Equal(["link veth1234 down", "link veth1234 up"], _kernel.Calls);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
