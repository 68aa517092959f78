using CriRuntime.Errors;
using CriRuntime.Server;
using Grpc.Core;

namespace CriRuntime.Tests.Unit;

public class ErrorMappingTests
{
    [Theory]
    [InlineData(ErrorKind.InvalidArgument, StatusCode.InvalidArgument)]
    [InlineData(ErrorKind.NotFound, StatusCode.NotFound)]
    [InlineData(ErrorKind.AlreadyExists, StatusCode.AlreadyExists)]
    [InlineData(ErrorKind.FailedPrecondition, StatusCode.FailedPrecondition)]
    [InlineData(ErrorKind.Unavailable, StatusCode.Unavailable)]
    [InlineData(ErrorKind.DeadlineExceeded, StatusCode.DeadlineExceeded)]
    public void TypedErrors_MapToTheirCode_KeepingTheMessage(ErrorKind kind, StatusCode code)
    {
        var s = CriErrorInterceptor.ToStatus(new CriException(kind, "pod sandbox abc not found"), "/runtime.v1.RuntimeService/X");
        Assert.Equal(code, s.StatusCode);
        Assert.Equal("pod sandbox abc not found", s.Detail);
    }

    [Fact]
    public void UntypedException_IsInternal()
        => Assert.Equal(StatusCode.Internal, CriErrorInterceptor.ToStatus(new InvalidOperationException("boom"), "/m").StatusCode);

    [Fact]
    public void BareUnimplemented_NamesTheRpc()
    {
        var s = CriErrorInterceptor.ToStatus(new RpcException(new Status(StatusCode.Unimplemented, "")), "/runtime.v1.RuntimeService/CheckpointPod");
        Assert.Equal(StatusCode.Unimplemented, s.StatusCode);
        Assert.Contains("/runtime.v1.RuntimeService/CheckpointPod", s.Detail);
    }

    [Fact]
    public void Subject_IsTheContainerOrPodIdOfTheRequest()
    {
        Assert.Equal("container_id=c1", CriErrorInterceptor.Subject(new CriRuntime.Cri.V1.StartContainerRequest { ContainerId = "c1" }));
        Assert.Equal("pod_sandbox_id=p1", CriErrorInterceptor.Subject(new CriRuntime.Cri.V1.StopPodSandboxRequest { PodSandboxId = "p1" }));
        Assert.Equal("", CriErrorInterceptor.Subject(new CriRuntime.Cri.V1.VersionRequest()));
    }
}
