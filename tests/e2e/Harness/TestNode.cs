using CriRuntime.Cri.V1;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>What most container tests start with: a daemon of their own with a private bridge
/// network, a client, and the busybox image of the registry fixture pulled. Dispose tears the
/// pods it made down, then the client, network and daemon (whose Dispose runs the leak check).</summary>
public sealed class TestNode : IAsyncDisposable
{
    public required DaemonProcess D { get; init; }
    public required TestNetwork Net { get; init; }
    public required CriClient C { get; init; }
    public required string Busybox { get; init; }
    private readonly List<string> _pods = [];

    /// <param name="configure">Runs before the daemon starts (e.g. to write a conf.d drop-in).</param>
    /// <param name="network">the node's CNI network; null: a <see cref="TestNetwork"/> of its own.</param>
    public static async Task<TestNode> StartAsync(RegistryFixture registry, Action<DaemonProcess>? configure = null, Func<DaemonProcess, TestNetwork>? network = null)
    {
        var d = new DaemonProcess();
        var net = network?.Invoke(d) ?? new TestNetwork(d);
        try
        {
            configure?.Invoke(d);
            await d.StartAsync();
            var c = d.Client();
            var busybox = registry.Image("busybox");
            await c.PullAsync(busybox);
            return new TestNode { D = d, Net = net, C = c, Busybox = busybox };
        }
        catch
        {
            net.Dispose();
            d.Dispose();
            throw;
        }
    }

    /// <summary>A pod (config from <see cref="PodHelpers.PodConfig"/>) removed again at Dispose.</summary>
    public async Task<(string Id, PodSandboxConfig Config)> RunPodAsync(string name, Action<PodSandboxConfig>? configure = null)
    {
        var config = PodHelpers.PodConfig(name);
        configure?.Invoke(config);
        var id = await C.RunPodAsync(config);
        _pods.Add(id);
        return (id, config);
    }

    /// <summary>A pod made some other way, to be removed at Dispose too.</summary>
    public void Track(string podId) => _pods.Add(podId);

    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var id in _pods)
            {
                await C.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = id });
                await C.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = id });
            }
        }
        finally
        {
            C.Dispose();
            Net.Dispose();
            D.Dispose();
        }
    }
}
