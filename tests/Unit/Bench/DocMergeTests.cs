using CriRuntime.Bench;

namespace CriRuntime.Tests.Unit.Bench;

public class DocMergeTests
{
    private const string Existing = """
        # Benchmarks

        old intro

        ## Run

        - old run

        ## Lifecycle latency (ms)

        old lifecycle

        ## Checkpoint

        old checkpoint

        ## Targets (issues 3, 4, 7)

        old targets
        """;

    [Fact]
    public void ARegeneratedSection_ReplacesItsNamesakeInPlace_AndEveryOtherSectionIsKept()
    {
        var fresh = "# Benchmarks\n\nnew intro\n\n## Run\n\n- new run\n\n## Checkpoint\n\nnew checkpoint\n";

        var merged = DocMerge.Merge(Existing, fresh);

        var titles = DocMerge.Parse(merged).Sections.Select(s => s.Title).ToList();
        Assert.Equal(["Run", "Lifecycle latency (ms)", "Checkpoint", "Targets (issues 3, 4, 7)"], titles);
        Assert.Contains("new intro", merged);
        Assert.DoesNotContain("old intro", merged);
        Assert.Contains("new checkpoint", merged);
        Assert.DoesNotContain("old checkpoint", merged);
        Assert.Contains("old lifecycle", merged);
        Assert.Contains("old targets", merged);
        Assert.Contains("- new run", merged);
    }

    [Fact]
    public void ASectionTheDocumentLacks_IsAddedBeforeTheTargets()
    {
        var fresh = "# Benchmarks\n\n## Run\n\nr\n\n## Telemetry cost\n\nnew telemetry\n";

        var titles = DocMerge.Parse(DocMerge.Merge(Existing, fresh)).Sections.Select(s => s.Title).ToList();

        Assert.Equal(["Run", "Lifecycle latency (ms)", "Checkpoint", "Telemetry cost", "Targets (issues 3, 4, 7)"], titles);
    }

    [Fact]
    public void WithoutTargets_ANewSectionGoesLast()
    {
        var titles = DocMerge.Parse(DocMerge.Merge("# B\n\n## Run\n\nx\n", "# B\n\n## Run\n\ny\n\n## New\n\nz\n")).Sections.Select(s => s.Title).ToList();

        Assert.Equal(["Run", "New"], titles);
    }
}
