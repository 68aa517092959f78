using CriRuntime.Migration;

namespace CriRuntime.Tests.Unit.Migration;

/// <summary>Who owns a lazily restored pod on the target (docs/migration.md, "Restarts"): not the
/// target until every memory page arrived, so its restart removes a copy still paging.</summary>
public class MigrationPhaseTests
{
    private static MigrationRecord Target(string phase, bool lazy, bool arrived) =>
        new() { Id = "m", Side = MigrationSide.Target, Phase = phase, Lazy = lazy, PagesArrived = arrived };

    [Fact]
    public void TargetPagesIncomplete_IsTrue_ForALazyStartedCopyWithoutTheArrivedMark() =>
        Assert.True(MigrationPhase.TargetPagesIncomplete(Target(MigrationPhase.Started, lazy: true, arrived: false)));

    [Theory]
    [InlineData(MigrationPhase.Started, true, true)]   // every page arrived: the target keeps it
    [InlineData(MigrationPhase.Started, false, false)] // cold: nothing follows
    [InlineData(MigrationPhase.Committed, true, false)]
    [InlineData(MigrationPhase.Aborted, true, false)]
    public void TargetPagesIncomplete_IsFalse_Otherwise(string phase, bool lazy, bool arrived) =>
        Assert.False(MigrationPhase.TargetPagesIncomplete(Target(phase, lazy, arrived)));

    [Fact]
    public void TargetPagesIncomplete_IsFalse_OnTheSource() =>
        Assert.False(MigrationPhase.TargetPagesIncomplete(new MigrationRecord { Id = "m", Side = MigrationSide.Source, Phase = MigrationPhase.Started, Lazy = true }));

    [Fact]
    public void Store_KeepsTheLazyAndArrivedMarks_AcrossARestart()
    {
        var root = Directory.CreateTempSubdirectory("migstore").FullName;
        try
        {
            new MigrationStore(root).Save(Target(MigrationPhase.Started, lazy: true, arrived: true));
            var again = new MigrationStore(root).Find("m");
            Assert.NotNull(again);
            Assert.True(again.Lazy);
            Assert.True(again.PagesArrived);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}
