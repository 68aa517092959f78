namespace CriRuntime.Tests.E2E.Harness;

/// <summary>A bridge CNI network private to one test daemon: its own bridge name, subnet and
/// host-local lease directory (inside the test's directory, so leaks are visible). Dispose deletes
/// the bridge, which the bridge plugin leaves behind by design.</summary>
public sealed class TestNetwork : IDisposable
{
    private static int _counter;
    public string Bridge { get; }
    public string Subnet { get; }
    public string LeaseDir { get; }
    public string Name { get; }

    /// <param name="subnet">the pods' subnet; null: one of this network's own. Nodes in network
    /// namespaces of their own may share one (Migration/NodeNetwork).</param>
    public TestNetwork(DaemonProcess daemon, bool portMap = true, string? subnet = null)
    {
        // Unique per test process and per network, so concurrent test runs (and a bridge a killed
        // run left behind) never share a subnet: two routes for one subnet make pods unreachable.
        var n = Interlocked.Increment(ref _counter) % 250;
        var p = Environment.ProcessId % 150;
        Bridge = $"crirt{Environment.ProcessId % 10000}x{n}";
        Subnet = subnet ?? $"10.{100 + p}.{n}.0/24";
        Name = $"e2e-{n}";
        LeaseDir = Path.Combine(daemon.Dir, "cni-leases");
        var portmap = portMap ? """,{"type":"portmap","capabilities":{"portMappings":true},"snat":true}""" : "";
        File.WriteAllText(Path.Combine(daemon.CniConfDir, "10-e2e.conflist"), $$$"""
            {"cniVersion":"1.0.0","name":"{{{Name}}}","plugins":[
              {"type":"bridge","bridge":"{{{Bridge}}}","isGateway":true,"ipMasq":false,"hairpinMode":true,"capabilities":{"ips":true},
               "ipam":{"type":"host-local","subnet":"{{{Subnet}}}","dataDir":"{{{LeaseDir}}}","routes":[{"dst":"0.0.0.0/0"}]}},
              {"type":"loopback"}{{{portmap}}}
            ]}
            """);
    }

    /// <summary>IP addresses host-local still holds leases for.</summary>
    public IReadOnlyList<string> Leases()
    {
        var dir = Path.Combine(LeaseDir, Name);
        return Directory.Exists(dir)
            ? [.. Directory.GetFiles(dir).Select(Path.GetFileName).Where(f => f is not null && char.IsAsciiDigit(f[0]))!]
            : [];
    }

    public void Dispose() => Shell.TryRun("ip", "link", "del", Bridge);
}
