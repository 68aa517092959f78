using System.Net;
using System.Net.Sockets;

namespace CriRuntime.Checkpoint;

/// <summary>The dump of a pod for a lazy (post-copy) migration (docs/migration.md, "Lazy mode"):
/// each container's `criu dump --lazy-pages` writes its images without the memory pages, runs the
/// post-dump hook, and then serves the pages on a TCP port of <see cref="Address"/> until the
/// target's `criu lazy-pages` has fetched them all, when it exits (0: every page delivered). The
/// tasks stay seized and frozen meanwhile. <see cref="StopAsync"/> kills every page server (Abort,
/// a failure): the tasks are released, still frozen through their cgroups, for the caller to thaw.</summary>
public sealed class LazyDump : IDisposable
{
    /// <summary>How long a page server may serve: the target pulls the pages in the background as
    /// well as on fault, so this is a bound on a stuck target, not the expected time.</summary>
    public static readonly TimeSpan ServeTimeout = TimeSpan.FromMinutes(10);

    private readonly CancellationTokenSource _stop;
    private readonly List<Server> _servers = [];

    /// <param name="address">this node's address as the target reaches it: the page servers
    /// bind to it only (<see cref="LocalAddressTowardsAsync"/>).</param>
    /// <param name="tlsArgs">CRIU's TLS options for the page servers (<see cref="TlsArgs"/>).</param>
    public LazyDump(string address, IReadOnlyList<string> tlsArgs, CancellationToken ct)
    {
        Address = address;
        ServerArgs = tlsArgs;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
    }

    public string Address { get; }

    /// <summary>Added to each lazy dump's CRIU arguments.</summary>
    public IReadOnlyList<string> ServerArgs { get; }

    /// <summary>CRIU's own TLS (GnuTLS) for the page server connection, with this node's
    /// [migration] certificate and CA: the page server requires a client certificate and both
    /// ends accept only a peer the CA signed, as the migration listener does. The client (the
    /// target's lazy-pages) also checks that the source's certificate names the address it
    /// dials; the server does not check a name (it would compare the client's certificate with
    /// its own address).</summary>
    public static IReadOnlyList<string> TlsArgs(Config.MigrationSection m, bool server) =>
    [
        "--tls", "--tls-cacert", m.CaFile, "--tls-cert", m.CertFile, "--tls-key", m.KeyFile,
        .. server ? (string[])["--tls-no-cn-verify"] : [],
    ];

    /// <summary>Cancelled to kill the page servers.</summary>
    public CancellationToken Stopping => _stop.Token;

    /// <summary>A container's page server: the CRIU dump that serves its pages, until it exits.</summary>
    public sealed record Server(string ContainerName, int Port, Task<CriuResult> Done, string Scratch);

    public IReadOnlyList<Server> Servers
    {
        get { lock (_servers) return [.. _servers]; }
    }

    internal void Add(Server s)
    {
        lock (_servers) _servers.Add(s);
    }

    /// <summary>Waits until every page server exited: null when each did so successfully (the
    /// target has every page), else why not.</summary>
    public async Task<string?> WaitAsync(CancellationToken ct)
    {
        var why = new List<string>();
        foreach (var s in Servers)
        {
            var r = await s.Done.WaitAsync(ct);
            if (r.ExitCode != 0 || r.TimedOut)
                why.Add($"container {s.ContainerName}: criu page server {(r.TimedOut ? "killed" : $"failed (exit {r.ExitCode})")}{Criu.LogTail(s.Scratch, r.Output)}");
        }
        return why.Count == 0 ? null : string.Join("; ", why);
    }

    /// <summary>Kills every page server still serving and waits for them to be gone.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        foreach (var s in Servers)
            await s.Done.ContinueWith(_ => { }, TaskScheduler.Default);
    }

    /// <summary>A TCP port free on <paramref name="address"/> now (the kernel's pick for port 0).</summary>
    public static int FreePort(string address)
    {
        using var l = new TcpListener(IPAddress.Parse(address), 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>The local address this node uses to reach <paramref name="host"/>:<paramref name="port"/>
    /// (the target's migration listener): the address the target reaches this node on, and the
    /// only one the page servers listen on.</summary>
    public static async Task<string> LocalAddressTowardsAsync(string host, int port, CancellationToken ct)
    {
        using var s = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(host, port, ct);
        var local = ((IPEndPoint)s.LocalEndPoint!).Address;
        return (local.IsIPv4MappedToIPv6 ? local.MapToIPv4() : local).ToString();
    }

    public void Dispose() => _stop.Dispose();
}
