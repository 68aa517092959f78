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
    [Fact]
    public void RssByMapping_SplitsTheExecutablesMappingsItsBssAndTheRest()
    {
        const string smaps = """
            560c75599000-560c755c8000 r--p 00000000 fe:00 5310018                    /opt/criruntime
            Rss:                   4 kB
            560c755c8000-560c762cc000 r-xp 0002f000 fe:00 5310018                    /opt/criruntime
            Rss:                9580 kB
            560c762cc000-560c76a40000 r--p 00d33000 fe:00 5310018                    /opt/criruntime
            Rss:                2076 kB
            Anonymous:             0 kB
            560c76f3f000-560c76fa2000 rw-p 019a5000 fe:00 5310018                    /opt/criruntime
            Rss:                 396 kB
            560c76fa2000-560c7778b000 rw-p 00000000 00:00 0 
            Rss:                7976 kB
            560c78000000-560c78200000 rw-p 00000000 00:00 0                          [heap]
            Rss:                1808 kB
            7f7795400000-7f7795800000 rw-p 00000000 00:00 0 
            Rss:                4096 kB
            7f7795800000-7f7795c00000 rw-p 00000000 00:00 0 
            Rss:                4000 kB
            7f8359605000-7f8359700000 r-xp 00028000 fe:00 123                        /usr/lib/x86_64-linux-gnu/libc.so.6
            Rss:                 980 kB
            7ffd3b5d6000-7ffd3b5f7000 rw-p 00000000 00:00 0                          [stack]
            Rss:                  20 kB
            """;
        var parts = Stats.RssByMapping(smaps, "/opt/criruntime");
        Assert.Equal(new Stats.RssParts(Code: 9580, ReadOnly: 2080, Data: 396, TypeData: 7976, Anonymous: 8096, MallocHeap: 1808, Libraries: 980, Other: 20), parts);
        Assert.Equal(30936, parts.Total);
    }
    [Fact]
    public void ManagedHeapKbAfterTrim_TakesTheLastTrimLoggedAtOrBeforeTheTime()
    {
        const string log = """
            2026-12-05T04:52:04.586Z dbug: CriRuntime.Server.IdleTrim[20] Idle trim: RSS 46804 -> 20452 KiB; managed heap 7350 KiB, committed by the GC 7360 KiB, of it free 3265 KiB
            2026-12-05T04:52:05.000Z dbug: CriRuntime.Server.CriErrorInterceptor[1] /runtime.v1.RuntimeService/Status ok in 0.5 ms
            2026-12-05T04:54:29.708Z dbug: CriRuntime.Server.IdleTrim[20] Idle trim: RSS 69260 -> 29368 KiB; managed heap 14045 KiB, committed by the GC 14060 KiB, of it free 128 KiB
            """;
        Assert.Null(StepTimes.ManagedHeapKbAfterTrim(log, new DateTime(2026, 12, 5, 4, 50, 0, DateTimeKind.Utc)));
        Assert.Equal(7350L, StepTimes.ManagedHeapKbAfterTrim(log, new DateTime(2026, 12, 5, 4, 54, 0, DateTimeKind.Utc)));
        Assert.Equal(14045L, StepTimes.ManagedHeapKbAfterTrim(log, new DateTime(2026, 12, 5, 4, 55, 0, DateTimeKind.Utc)));
    }
}
