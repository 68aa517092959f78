using CriRuntime.Interop;
using CriRuntime.Kernel;
using CriRuntime.Network;

namespace CriRuntime.Migration;

/// <summary>The source pod's network lock while its TCP connections move to the target
/// (docs/migration.md, "Keeping the pod's IP and connections"): the node's end of each of the
/// pod's links (the host veth on the CNI bridge) is set down before the freeze, so from then on
/// no packet reaches the source's sockets (nothing the peer sends is acknowledged by a copy that
/// will not run again) and none leaves them (no RST or FIN when the frozen pod is killed at Commit
/// and its namespace removed). Abort, a failure and a restart in a phase that thaws the source
/// set the links up again; Commit leaves them down until the pod's removal deletes them.
/// CRIU's own lock (iptables or nftables rules per connection) only lasts as long as its dump,
/// which ends long before Commit: it cannot cover the source's kill.</summary>
public sealed class NetworkLock(CniNetwork network, IHostKernel kernel)
{
    /// <summary>The links of the pod to lock (its interfaces on this node's side).</summary>
    public IReadOnlyList<string> Links(string podId) => network.HostInterfaces(podId);

    public void Lock(IEnumerable<string> links)
    {
        foreach (var link in links) kernel.SetLinkUp(link, up: false);
    }

    /// <summary>Idempotent: a link that is gone (the pod removed) needs nothing.</summary>
    public void Unlock(IEnumerable<string> links)
    {
        foreach (var link in links)
        {
            try { kernel.SetLinkUp(link, up: true); }
            catch (KernelException e) when (e.Errno == 19) { } // ENODEV
        }
    }
}
