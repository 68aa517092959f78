using System.Net;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>The kubelet tells us the node's pod CIDR(s). We keep it, durably, for CNI plugins
    /// that ask for it; an empty CIDR means "no change", as the kubelet sends it on every sync.</summary>
    public override Task<UpdateRuntimeConfigResponse> UpdateRuntimeConfig(UpdateRuntimeConfigRequest request, ServerCallContext context)
    {
        var cidr = request.RuntimeConfig?.NetworkConfig?.PodCidr ?? "";
        if (cidr.Length == 0) return Task.FromResult(new UpdateRuntimeConfigResponse());
        foreach (var part in cidr.Split(','))
            if (!IPNetwork.TryParse(part.Trim(), out _))
                throw Fail.InvalidArgument($"runtime_config.network_config.pod_cidr: '{part.Trim()}' is not a CIDR");
        _runtimeConfig.SetPodCidr(cidr);
        return Task.FromResult(new UpdateRuntimeConfigResponse());
    }
}
