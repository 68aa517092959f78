using Grpc.Core;

namespace CriRuntime.Tests.Unit.Controllers;

/// <summary>What gRPC hands a handler: the method name and a cancellation token.</summary>
internal sealed class TestCallContext(string method) : ServerCallContext
{
    protected override string MethodCore => method;
    protected override string HostCore => "unix:/run/criruntime/criruntime.sock";
    protected override string PeerCore => "unix:";
    protected override DateTime DeadlineCore => DateTime.MaxValue;
    protected override Metadata RequestHeadersCore { get; } = [];
    protected override CancellationToken CancellationTokenCore => CancellationToken.None;
    protected override Metadata ResponseTrailersCore { get; } = [];
    protected override Status StatusCore { get; set; }
    protected override WriteOptions? WriteOptionsCore { get; set; }
    protected override AuthContext AuthContextCore => new(null, []);
    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();
    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
}
