using CriRuntime.Bench;

namespace CriRuntime.Tests.Unit.Bench;

/// <summary>The benchmark's pure arithmetic and /proc parsing (hack/bench/Stats.cs, linked).</summary>
public class BenchStatsTests
{
    [Fact]
    public void Percentile_InterpolatesBetweenClosestRanks()
    {
        double[] samples = [40, 10, 30, 20]; // unsorted on purpose
        Assert.Equal(10, Stats.Percentile(samples, 0));
        Assert.Equal(25, Stats.Percentile(samples, 50));
        Assert.Equal(37, Stats.Percentile(samples, 90), 6);
        Assert.Equal(40, Stats.Percentile(samples, 100));
    }

    [Fact]
    public void Percentile_OfOneSample_IsThatSample_AndOfNone_IsNaN()
    {
        Assert.Equal(7, Stats.Percentile([7.0], 90));
        Assert.True(double.IsNaN(Stats.Percentile([], 50)));
    }

    [Fact]
    public void Percentile_RejectsOutOfRangeP() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Stats.Percentile([1.0], 101));

    [Fact]
    public void ParseSmapsRollup_ReadsRssAndPss_NotTheirBreakdowns()
    {
        const string text = """
            55d0c0a00000-7ffd3b5f7000 ---p 00000000 00:00 0                          [rollup]
            Rss:                2948 kB
            Pss:                1034 kB
            Pss_Dirty:           600 kB
            Pss_Anon:            580 kB
            Shared_Clean:       2100 kB
            """;
        Assert.Equal((2948L, 1034L), Stats.ParseSmapsRollup(text));
    }

    [Fact]
    public void ParseSmapsRollup_WithoutPss_Throws() =>
        Assert.Throws<FormatException>(() => Stats.ParseSmapsRollup("Rss: 12 kB\n"));

    [Fact]
    public void MeminfoKb_MatchesTheWholeKey()
    {
        const string text = "MemTotal:       24683492 kB\nMemFree:        22000000 kB\nMemAvailable:   23000000 kB\n";
        Assert.Equal(24683492L, Stats.MeminfoKb(text, "MemTotal"));
        Assert.Equal(23000000L, Stats.MeminfoKb(text, "MemAvailable"));
        Assert.Throws<FormatException>(() => Stats.MeminfoKb(text, "Mem"));
    }
}
