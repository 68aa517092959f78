using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<AttachResponse> Attach(AttachRequest request, ServerCallContext context)
    {
        ValidateStreams("attach", request.ContainerId, request.Stdin, request.Stdout, request.Stderr, request.Tty);
        return _streaming.AttachAsync(request, context.CancellationToken);
    }
}
