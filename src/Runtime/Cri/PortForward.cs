using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Returns a single-use URL that forwards to ports on the pod's loopback. The ports are
    /// named by the client per connection (SPDY) or in the URL/request (WebSocket).</summary>
    public override Task<PortForwardResponse> PortForward(PortForwardRequest request, ServerCallContext context)
    {
        var pod = _pods.Get(request.PodSandboxId);
        foreach (var port in request.Port)
            if (port is < 1 or > 65535) throw Fail.InvalidArgument($"port: {port} is out of range 1-65535");
        return _streaming.PortForwardAsync(new PortForwardRequest(request) { PodSandboxId = pod.Id }, context.CancellationToken);
    }
}
