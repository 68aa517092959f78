using System.Net;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Network;

namespace CriRuntime.Pods;

/// <summary>The pod's port mappings as the CNI <c>portMappings</c> capability wants them.</summary>
public static class PortMappings
{
    /// <summary>Checks every mapping and returns the host ports among them. The kubelet sends a
    /// mapping with host_port 0 for every containerPort without a hostPort (informational: the
    /// port is reachable on the pod IP anyway); like containerd and CRI-O we pass those to no
    /// plugin (portmap refuses port 0).</summary>
    public static IReadOnlyList<PortMappingArg> ForCni(IList<PortMapping> mappings)
    {
        var result = new List<PortMappingArg>();
        for (var i = 0; i < mappings.Count; i++)
        {
            var p = mappings[i];
            var field = $"config.port_mappings[{i}]";
            if (p.ContainerPort is < 1 or > 65535)
                throw Fail.InvalidArgument($"{field}.container_port: {p.ContainerPort} is outside 1..65535");
            if (p.HostPort is < 0 or > 65535)
                throw Fail.InvalidArgument($"{field}.host_port: {p.HostPort} is outside 0..65535 (0: no host port)");
            var protocol = p.Protocol switch
            {
                Protocol.Tcp => "tcp",
                Protocol.Udp => "udp",
                Protocol.Sctp => "sctp",
                _ => throw Fail.InvalidArgument($"{field}.protocol: {(int)p.Protocol} is not TCP, UDP or SCTP"),
            };
            if (p.HostIp.Length > 0 && !IPAddress.TryParse(p.HostIp, out _))
                throw Fail.InvalidArgument($"{field}.host_ip: '{p.HostIp}' is not an IP address");
            if (p.HostPort == 0) continue;
            result.Add(new PortMappingArg(p.HostPort, p.ContainerPort, protocol, p.HostIp));
        }
        return result;
    }
}
