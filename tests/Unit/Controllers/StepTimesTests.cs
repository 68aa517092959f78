using CriRuntime.Containers;

namespace CriRuntime.Tests.Unit.Controllers;

public sealed class StepTimesTests
{
    [Fact]
    public void Add_ReportsAStepTimedElsewhere_InOrder_WithoutMovingTheNextMark()
    {
        var steps = new StepTimes();
        steps.Add("shim.cgroup", 1.5);
        steps.Add("shim.init", 12.345);
        steps.Mark("shim create");

        var text = steps.ToString();

        Assert.Matches(@"^shim\.cgroup=1\.50ms shim\.init=12\.35ms shim create=[0-9]+\.[0-9]{2}ms total=[0-9]+\.[0-9]{2}ms$", text);
    }
}
