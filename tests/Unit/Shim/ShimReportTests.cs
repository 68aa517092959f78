using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The supervisor's one-line readiness report, as the daemon reads it from the launcher
/// (and `create` turns it into JSON).</summary>
public sealed class ShimReportTests
{
    [Fact]
    public void Ok_GivesThePids_AndThePhasesInOrder()
    {
        var r = ShimReport.Parse("ok 100 101 shim.cgroup:1:2 shim.spawn:2:5\n", out var error);
        Assert.NotNull(r);
        Assert.Equal("", error);
        Assert.Equal((100, 101), (r.ShimPid, r.Pid));
        Assert.Equal([("shim.cgroup", 1L, 2L), ("shim.spawn", 2L, 5L)], r.Phases.Select(p => (p.Name, p.Start, p.End)));
    }

    [Fact]
    public void Ok_WithoutPhases_OrWithAMalformedOne_StillGivesThePids()
    {
        Assert.Empty(ShimReport.Parse("ok 100 101", out _)!.Phases);
        // A container restored at start has no init yet.
        Assert.Equal(0, ShimReport.Parse("ok 100 0 shim.cgroup:1:2", out _)!.Pid);
        Assert.Equal(["b"], ShimReport.Parse("ok 100 101 a:x:2 :1:2 b:1:2 c:1", out _)!.Phases.Select(p => p.Name));
    }

    [Fact]
    public void Error_IsTheShimsMessage()
    {
        Assert.Null(ShimReport.Parse("error cgroup: permission denied\n", out var error));
        Assert.Equal("cgroup: permission denied", error);
    }

    [Theory]
    [InlineData("", "the shim reported nothing")]
    [InlineData("ok", "unreadable report")]
    [InlineData("ok 100", "unreadable report")]
    [InlineData("ok -1 5", "unreadable report")]
    [InlineData("ok 0 5", "unreadable report")]
    [InlineData("ok 10 x", "unreadable report")]
    [InlineData("ready 10 11", "unreadable report")]
    public void AnythingElse_IsNoReport_AndSaysWhy(string line, string why)
    {
        Assert.Null(ShimReport.Parse(line, out var error));
        Assert.Contains(why, error);
    }
}
