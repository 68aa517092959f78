using CriRuntime.Server;

namespace CriRuntime.Tests.Unit.Server;

public class IdleTrimTests
{
    private long _allocated;
    private int _trims;

    private IdleTrim Make() => new(() => _trims++, () => _allocated);

    [Fact]
    public void Fire_WithACallInFlight_DoesNotTrim_AndOnceItEnds_Does()
    {
        using var idle = Make();
        _allocated = 100 << 20;
        idle.Enter();
        idle.Fire();
        Assert.Equal(0, _trims);
        idle.Exit();
        idle.Fire();
        Assert.Equal(1, _trims);
    }

    [Fact]
    public void Fire_AfterLittleAllocation_DoesNotTrimAgain_UntilABurstAllocatedEnough()
    {
        using var idle = Make();
        idle.Fire(); // the first (start-up) trim is always due
        Assert.Equal(1, _trims);
        _allocated += IdleTrim.Allocated - 1; // the kubelet's periodic List calls
        idle.Enter();
        idle.Exit();
        idle.Fire();
        Assert.Equal(1, _trims);
        _allocated += 1;
        idle.Fire();
        Assert.Equal(2, _trims);
        Assert.Equal(2, idle.Trims);
    }

    [Fact]
    public void OverlappingCalls_OnlyTheLastOneOut_LeavesTheDaemonIdle()
    {
        using var idle = Make();
        _allocated = 100 << 20;
        idle.Enter();
        idle.Enter();
        idle.Exit();
        idle.Fire();
        Assert.Equal(0, _trims);
        idle.Exit();
        idle.Fire();
        Assert.Equal(1, _trims);
    }

    [Theory]
    [InlineData("/runtime.v1.RuntimeService/ListContainers", true)]
    [InlineData("/runtime.v1.RuntimeService/Status", true)]
    [InlineData("/runtime.v1.RuntimeService/ContainerStatus", true)]
    [InlineData("/runtime.v1.RuntimeService/ListPodSandboxStats", true)]
    [InlineData("/runtime.v1.ImageService/ImageFsInfo", true)]
    [InlineData("/runtime.v1.RuntimeService/RunPodSandbox", false)]
    [InlineData("/runtime.v1.RuntimeService/UpdateContainerResources", false)]
    [InlineData("/runtime.v1.ImageService/PullImage", false)]
    [InlineData("/runtime.v1.RuntimeService/ExecSync", false)]
    public void OnlyCallsThatChangeSomething_CountAsActivity(string method, bool read) =>
        Assert.Equal(read, IdleTrim.IsRead(method));
}
