using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<AttachResponse> Attach(AttachRequest request, ServerCallContext context)
    {
        ValidateStreams("attach", request.ContainerId, request.Stdin, request.Stdout, request.Stderr, request.Tty);
        _streaming.Runtime.EnsureContainerRunning(request.ContainerId);
        return Task.FromResult(_streaming.Attach(request));
    }
}
