using CriRuntime.Accounting;
using CriRuntime.Cri.V1;
using CriRuntime.Metrics;

namespace CriRuntime.Tests.Unit.Metrics;

/// <summary>Beancounter rows as CRI metrics: every counter the kernel keeps is a sample, an absent
/// one is no sample (never 0), and physpages also goes under cAdvisor's names.</summary>
public class BeancounterMetricsTests
{
    private static readonly BeancounterRow[] Rows =
    [
        new("numproc", 64, 64, 64, 1723, "processes", "pids.*"),
        new("physpages", 1000, 4096, BeancounterRow.Unlimited, 3, "bytes", "memory.*"),
        new("pagecache", 512, null, null, null, "bytes", "memory.stat cache"),
        new("numfile", null, null, null, null, "files", "-", "no cgroup counts open files"),
    ];

    private static List<Metric> Samples()
    {
        var s = new CadvisorMetrics.Samples(["c", "id", "img", "ns", "pod"], 1);
        s.AddBeancounters(Rows);
        return s.Metrics;
    }

    private static ulong? Value(List<Metric> metrics, string name, string resource) =>
        metrics.SingleOrDefault(m => m.Name == name && m.LabelValues[^1] == resource)?.Value.Value;

    [Fact]
    public void EveryCounterOfARow_IsASampleLabelledWithItsResource()
    {
        var m = Samples();
        Assert.Equal((64UL, 64UL, 64UL, 1723UL), (Value(m, "container_beancounter_held", "numproc"), Value(m, "container_beancounter_maxheld", "numproc"),
            Value(m, "container_beancounter_limit", "numproc"), Value(m, "container_beancounter_failcnt", "numproc")));
        Assert.Equal(MetricType.Counter, m.First(x => x.Name == "container_beancounter_failcnt").MetricType);
        Assert.Equal(MetricType.Gauge, m.First(x => x.Name == "container_beancounter_held").MetricType);
    }

    [Fact]
    public void ACounterTheCgroupLacks_AndAnUnlimitedLimit_HaveNoSample()
    {
        var m = Samples();
        Assert.DoesNotContain(m, x => x.LabelValues[^1] == "numfile");
        Assert.Equal(512UL, Value(m, "container_beancounter_held", "pagecache"));
        Assert.Null(Value(m, "container_beancounter_failcnt", "pagecache"));
        Assert.Null(Value(m, "container_beancounter_limit", "physpages"));
    }

    [Fact]
    public void Physpages_IsAlsoUnderCadvisorsMemoryNames()
    {
        var m = Samples();
        Assert.Equal(4096UL, Assert.Single(m, x => x.Name == "container_memory_max_usage_bytes").Value.Value);
        Assert.Equal(3UL, Assert.Single(m, x => x.Name == "container_memory_failcnt").Value.Value);
    }

    [Fact]
    public void EverySample_IsDescribed_WithOneValuePerLabelKey()
    {
        var descriptors = CadvisorMetrics.Descriptors().ToDictionary(d => d.Name);
        foreach (var m in Samples())
        {
            Assert.True(descriptors.TryGetValue(m.Name, out var d), m.Name);
            Assert.Equal(d!.LabelKeys.Count, m.LabelValues.Count);
        }
        Assert.Equal("resource", descriptors["container_beancounter_held"].LabelKeys[^1]);
    }
}
