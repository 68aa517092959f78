using CriRuntime.Config;
using CriRuntime.Containers;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>How long the daemon waits for a shim's answer: what the request takes itself, plus
/// runtime.shim_answer_timeout; a wait or an exec without a timeout is not bounded.</summary>
public class ShimAnswerDeadlineTests
{
    private static readonly ShimRunner Runner = new(new CriRuntimeConfig { Runtime = new RuntimeSection { ShimAnswerTimeout = TimeSpan.FromSeconds(7) }, Checkpoint = new CheckpointSection { DumpTimeout = TimeSpan.FromSeconds(60) } });

    [Theory]
    [InlineData(ShimOps.State, null, 7.0)]
    [InlineData(ShimOps.Kill, null, 7.0)]
    [InlineData(ShimOps.Start, null, 67.0)] // a start may be a CRIU restore: as long as a dump
    [InlineData(ShimOps.Update, null, 7.0)]
    [InlineData(ShimOps.Stop, 30.0, 37.0)]
    [InlineData(ShimOps.Stop, 0.0, 7.0)]
    [InlineData(ShimOps.Stop, null, 17.0)] // the shim's default grace, 10 s
    [InlineData(ShimOps.Exec, 2.0, 9.0)]
    [InlineData(ShimOps.Wait, 3.0, 10.0)]
    public void Bounded(string op, double? timeout, double seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), Runner.AnswerWithin(new ShimRequest { Op = op, Timeout = timeout }));

    [Theory]
    [InlineData(ShimOps.Wait, null)]
    [InlineData(ShimOps.Exec, null)]
    [InlineData(ShimOps.Exec, 0.0)]
    public void Unbounded(string op, double? timeout) =>
        Assert.Null(Runner.AnswerWithin(new ShimRequest { Op = op, Timeout = timeout }));
}
