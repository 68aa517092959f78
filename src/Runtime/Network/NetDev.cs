using CriRuntime.Namespaces;

namespace CriRuntime.Network;

public sealed record InterfaceCounters(string Name, ulong RxBytes, ulong RxErrors, ulong TxBytes, ulong TxErrors)
{
    public ulong RxPackets { get; init; }
    public ulong RxDropped { get; init; }
    public ulong TxPackets { get; init; }
    public ulong TxDropped { get; init; }
}

/// <summary>Interface counters of a network namespace: /proc/thread-self/net/dev read on a thread
/// that joined it (/proc/self/net would show the daemon's own namespace).</summary>
public static class NetDev
{
    public static IReadOnlyList<InterfaceCounters> Read(string netnsPath)
    {
        string text = "";
        NamespacePinner.RunIn(NamespaceKind.Net, netnsPath, () => text = File.ReadAllText("/proc/thread-self/net/dev"));
        return Parse(text);
    }

    /// <summary>"  eth0: rxbytes rxpackets rxerrs ... (8 receive columns) txbytes txpackets txerrs ..."</summary>
    public static IReadOnlyList<InterfaceCounters> Parse(string text)
    {
        var result = new List<InterfaceCounters>();
        foreach (var line in text.Split('\n').Skip(2))
        {
            var colon = line.IndexOf(':');
            if (colon < 0) continue;
            var f = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 12) continue;
            result.Add(new InterfaceCounters(line[..colon].Trim(), ulong.Parse(f[0]), ulong.Parse(f[2]), ulong.Parse(f[8]), ulong.Parse(f[10]))
            {
                RxPackets = ulong.Parse(f[1]),
                RxDropped = ulong.Parse(f[3]),
                TxPackets = ulong.Parse(f[9]),
                TxDropped = ulong.Parse(f[11]),
            });
        }
        return result;
    }
}
