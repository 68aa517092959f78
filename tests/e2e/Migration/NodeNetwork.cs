using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>Two servers and the network between them, on one machine (docs/migration.md, "Two
/// nodes on one machine"): three network namespaces, "outside" (the switch and router of a
/// rack, and where the test's client sits) and one per node, each node joined to outside by a
/// veth pair (node "uplink" 10.P.250.8n+2/30 and 8n+6/30, outside the first address of each /30; the nodes' default route
/// through outside, which forwards). Both nodes' CNI bridges serve one pod subnet, so a pod's
/// address can move from node A's bridge to node B's; outside routes each pod's /32 to the node
/// that runs it (<see cref="RoutePod"/>): what a CNI plugin or BGP does between real servers.
///
/// The daemons run in their node's namespace (<see cref="DaemonProcess.NetNs"/>), so the CNI
/// plugins make the bridge there and the migration listeners listen on the uplink addresses. The
/// test registry listens on 127.0.0.1 in the test's namespace: a node reaches it at the same
/// address through <see cref="LoopbackProxy"/>, a socket listening on the node's loopback (made
/// from a thread inside the node's namespace) whose connections the test forwards.
///
/// The namespaces, veths, addresses and routes are made with `ip` (iproute2): the repository has
/// no netlink client (the product leaves that work to the CNI plugins), and one written for this
/// fixture alone would be more code than what it tests. Only this fixture runs it.</summary>
public sealed partial class NodeNetwork : IDisposable
{
    private static int _counter;
    private readonly List<string> _namespaces = [];
    private readonly List<LoopbackProxy> _proxies = [];

    public string Outside { get; }
    public string NodeA { get; }
    public string NodeB { get; }
    public IPAddress AddressA { get; }
    public IPAddress AddressB { get; }
    /// <summary>The pods' subnet, the same on both nodes.</summary>
    public string PodSubnet { get; }

    public NodeNetwork(int registryPort)
    {
        var n = Interlocked.Increment(ref _counter) % 30;
        var p = 100 + Environment.ProcessId % 150;
        var prefix = $"crirt{Environment.ProcessId % 10000}m{n}";
        PodSubnet = $"10.{p}.{200 + n}.0/24";
        var net = $"10.{p}.250";
        // Two /30 links per fixture: 8n..8n+3 (outside .1, A .2) and 8n+4..8n+7 (outside .5, B .6).
        AddressA = IPAddress.Parse($"{net}.{8 * n + 2}");
        AddressB = IPAddress.Parse($"{net}.{8 * n + 6}");
        try
        {
            Outside = Add($"{prefix}-o");
            NodeA = Add($"{prefix}-a");
            NodeB = Add($"{prefix}-b");
            Link(Path.GetFileName(NodeA), "toa", AddressA);
            Link(Path.GetFileName(NodeB), "tob", AddressB);
            Sysctl(Outside, "net.ipv4.ip_forward", "1");
            foreach (var ns in new[] { NodeA, NodeB })
            {
                // The bridge plugin turns forwarding on too (isGateway); set before any pod.
                Sysctl(ns, "net.ipv4.ip_forward", "1");
                _proxies.Add(new LoopbackProxy(ns, registryPort));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private string Add(string name)
    {
        Shell.Run("ip", "netns", "add", name);
        _namespaces.Add(name);
        Shell.Run("ip", "-n", name, "link", "set", "lo", "up");
        return $"/run/netns/{name}";
    }

    /// <summary>A veth pair from outside (<paramref name="outsideEnd"/>, the /30's first address)
    /// to the node (uplink, <paramref name="nodeAddress"/>), the node's default route through outside.</summary>
    private void Link(string node, string outsideEnd, IPAddress nodeAddress)
    {
        var o = Path.GetFileName(Outside);
        var b = nodeAddress.GetAddressBytes();
        var gw = new IPAddress([b[0], b[1], b[2], (byte)(b[3] - 1)]);
        Shell.Run("ip", "-n", o, "link", "add", outsideEnd, "type", "veth", "peer", "name", "uplink", "netns", node);
        Shell.Run("ip", "-n", o, "addr", "add", $"{gw}/30", "dev", outsideEnd);
        Shell.Run("ip", "-n", o, "link", "set", outsideEnd, "up");
        Shell.Run("ip", "-n", node, "addr", "add", $"{nodeAddress}/30", "dev", "uplink");
        Shell.Run("ip", "-n", node, "link", "set", "uplink", "up");
        Shell.Run("ip", "-n", node, "route", "add", "default", "via", gw.ToString());
    }

    private static void Sysctl(string ns, string key, string value) =>
        Shell.Run("nsenter", $"--net={ns}", "--", "sysctl", "-q", "-w", $"{key}={value}");

    /// <summary>Outside routes <paramref name="podIp"/> to the node whose uplink has
    /// <paramref name="node"/> (the switch-over a CNI plugin or BGP makes once the target runs the pod).</summary>
    public void RoutePod(string podIp, IPAddress node) =>
        Shell.Run("ip", "-n", Path.GetFileName(Outside), "route", "replace", $"{podIp}/32", "via", node.ToString());

    /// <summary>Whether each port of <paramref name="bridge"/> in the node namespace <paramref name="ns"/>
    /// (the host ends of its pods' veths) is up: a pod's network lock sets its port down.</summary>
    public static IReadOnlyList<bool> BridgePortsUp(string ns, string bridge) =>
        [.. Shell.Run("ip", "-n", Path.GetFileName(ns), "-o", "link", "show", "master", bridge)
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l[(l.IndexOf('<') + 1)..l.IndexOf('>')].Split(',').Contains("UP"))];

    /// <summary>A TCP socket of the outside namespace (a client outside both nodes).</summary>
    public Socket OutsideSocket() => InNamespace(Outside, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));

    /// <summary>Runs <paramref name="make"/> on a thread of its own that entered the network
    /// namespace <paramref name="ns"/> (setns; the thread then ends): a socket made there stays in
    /// that namespace wherever it is used from.</summary>
    public static T InNamespace<T>(string ns, Func<T> make)
    {
        T? result = default;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var f = File.OpenHandle(ns, FileMode.Open, FileAccess.Read);
                if (Setns((int)f.DangerousGetHandle(), 0x40000000 /* CLONE_NEWNET */) != 0)
                    throw new IOException($"setns {ns}: errno {Marshal.GetLastPInvokeError()}");
                result = make();
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        if (error is not null) throw error;
        return result!;
    }

    public void Dispose()
    {
        foreach (var p in _proxies) p.Dispose();
        foreach (var ns in _namespaces) Shell.TryRun("ip", "netns", "del", ns);
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int Setns(int fd, int nstype);

    /// <summary>127.0.0.1:PORT of a node's namespace forwarded to 127.0.0.1:PORT of the test's.</summary>
    private sealed class LoopbackProxy : IDisposable
    {
        private readonly Socket _listener;
        private readonly int _port;
        private readonly CancellationTokenSource _stop = new();

        public LoopbackProxy(string ns, int port)
        {
            _port = port;
            _listener = InNamespace(ns, () =>
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                s.Bind(new IPEndPoint(IPAddress.Loopback, port));
                s.Listen(64);
                return s;
            });
            _ = AcceptAsync();
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket inner;
                try { inner = await _listener.AcceptAsync(_stop.Token); }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
                _ = ForwardAsync(inner);
            }
        }

        private async Task ForwardAsync(Socket inner)
        {
            using var outer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await outer.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _port), _stop.Token);
                await using var a = new NetworkStream(inner, ownsSocket: true);
                await using var b = new NetworkStream(outer, ownsSocket: false);
                await Task.WhenAny(a.CopyToAsync(b, _stop.Token), b.CopyToAsync(a, _stop.Token));
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
            {
                inner.Dispose();
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Dispose();
        }
    }
}
