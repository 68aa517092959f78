using System.Text;
using CriRuntime.Cri.V1;

namespace CriRuntime.Pods;

/// <summary>The per-pod files containers bind-mount: hostname, hosts, resolv.conf.</summary>
public static class SandboxFiles
{
    /// <summary>Every DNS server, search domain and option ends up as a word on a line of the
    /// pod's resolv.conf (and in the CNI plugins' runtimeConfig): a newline or another control
    /// character would add lines the kubelet never asked for, so they are refused, naming the entry.</summary>
    public static void Validate(DNSConfig? dns)
    {
        if (dns is null) return;
        Check(dns.Servers, "servers");
        Check(dns.Searches, "searches");
        Check(dns.Options, "options");

        static void Check(IReadOnlyList<string> values, string field)
        {
            for (var i = 0; i < values.Count; i++)
                if (values[i].Any(char.IsControl))
                    throw Errors.Fail.InvalidArgument($"config.dns_config.{field}[{i}]: {Quote(values[i])} contains a control character (newline, tab, NUL...)");
        }

        static string Quote(string v) =>
            "'" + string.Concat(v.Select(c => char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString())) + "'";
    }

    public static string ResolvConf(DNSConfig? dns, string hostResolvConf = "/etc/resolv.conf")
    {
        if (dns is null || (dns.Servers.Count == 0 && dns.Searches.Count == 0 && dns.Options.Count == 0))
            return File.Exists(hostResolvConf) ? File.ReadAllText(hostResolvConf) : "";
        var sb = new StringBuilder();
        if (dns.Searches.Count > 0) sb.Append("search ").AppendJoin(' ', dns.Searches).Append('\n');
        foreach (var s in dns.Servers) sb.Append("nameserver ").Append(s).Append('\n');
        if (dns.Options.Count > 0) sb.Append("options ").AppendJoin(' ', dns.Options).Append('\n');
        return sb.ToString();
    }

    public static string Hosts(string hostname, IReadOnlyList<string> ips)
    {
        var sb = new StringBuilder();
        sb.Append("127.0.0.1\tlocalhost\n");
        sb.Append("::1\tlocalhost ip6-localhost ip6-loopback\n");
        sb.Append("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        foreach (var ip in ips) sb.Append(ip).Append('\t').Append(hostname).Append('\n');
        return sb.ToString();
    }
}
