using CriRuntime.Accounting;
using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Network;

namespace CriRuntime.Metrics;

/// <summary>The metrics ListPodSandboxMetrics emits, named and typed as cAdvisor names them so
/// the kubelet's /metrics/cadvisor reads the same with PodAndContainerStatsFromCRI on. Every
/// metric a sample carries is listed here (ListMetricDescriptors answers from this table), and
/// its label values follow <see cref="LabelKeys"/> (plus "interface" for network metrics and
/// "resource" for the beancounter family).
/// Counters of seconds are whole seconds: the CRI value is an unsigned integer.</summary>
public static class CadvisorMetrics
{
    /// <summary>container: the container's name ("" for the pod's own cgroup); id: the container
    /// id (the pod id for pod-level samples); image: the image the kubelet asked for.</summary>
    public static readonly IReadOnlyList<string> LabelKeys = ["container", "id", "image", "namespace", "pod"];

    /// <param name="ExtraLabel">A label key after <see cref="LabelKeys"/> that every sample of this
    /// metric carries ("interface", "resource"), or null.</param>
    public sealed record Descriptor(string Name, MetricType Type, string Help, string? ExtraLabel = null);

    private const string PerInterface = "interface";
    private const string PerResource = "resource";

    public static readonly IReadOnlyList<Descriptor> All =
    [
        new("container_cpu_usage_seconds_total", MetricType.Counter, "Cumulative cpu time consumed in seconds."),
        new("container_cpu_user_seconds_total", MetricType.Counter, "Cumulative user cpu time consumed in seconds."),
        new("container_cpu_system_seconds_total", MetricType.Counter, "Cumulative system cpu time consumed in seconds."),
        new("container_cpu_cfs_periods_total", MetricType.Counter, "Number of elapsed enforcement period intervals."),
        new("container_cpu_cfs_throttled_periods_total", MetricType.Counter, "Number of throttled period intervals."),
        new("container_cpu_cfs_throttled_seconds_total", MetricType.Counter, "Total time duration the container has been throttled."),
        new("container_memory_usage_bytes", MetricType.Gauge, "Current memory usage in bytes, including all memory regardless of when it was accessed."),
        new("container_memory_working_set_bytes", MetricType.Gauge, "Current working set in bytes."),
        new("container_memory_rss", MetricType.Gauge, "Size of RSS in bytes."),
        new("container_memory_cache", MetricType.Gauge, "Number of bytes of page cache memory."),
        new("container_memory_swap", MetricType.Gauge, "Container swap usage in bytes."),
        new("container_spec_memory_limit_bytes", MetricType.Gauge, "Memory limit for the container (0: unlimited)."),
        new("container_oom_events_total", MetricType.Counter, "Count of out of memory events observed for the container."),
        new("container_memory_max_usage_bytes", MetricType.Gauge, "Maximum memory usage recorded in bytes."),
        new("container_memory_failcnt", MetricType.Counter, "Number of memory usage hits limits."),
        new("container_processes", MetricType.Gauge, "Number of processes running inside the container."),
        new("container_fs_usage_bytes", MetricType.Gauge, "Number of bytes consumed by the container's writable layer."),
        new("container_fs_inodes_used", MetricType.Gauge, "Number of inodes used by the container's writable layer."),
        new("container_start_time_seconds", MetricType.Gauge, "Start time of the container since unix epoch in seconds."),
        new("container_network_receive_bytes_total", MetricType.Counter, "Cumulative count of bytes received.", ExtraLabel: PerInterface),
        new("container_network_receive_packets_total", MetricType.Counter, "Cumulative count of packets received.", ExtraLabel: PerInterface),
        new("container_network_receive_packets_dropped_total", MetricType.Counter, "Cumulative count of packets dropped while receiving.", ExtraLabel: PerInterface),
        new("container_network_receive_errors_total", MetricType.Counter, "Cumulative count of errors encountered while receiving.", ExtraLabel: PerInterface),
        new("container_network_transmit_bytes_total", MetricType.Counter, "Cumulative count of bytes transmitted.", ExtraLabel: PerInterface),
        new("container_network_transmit_packets_total", MetricType.Counter, "Cumulative count of packets transmitted.", ExtraLabel: PerInterface),
        new("container_network_transmit_packets_dropped_total", MetricType.Counter, "Cumulative count of packets dropped while transmitting.", ExtraLabel: PerInterface),
        new("container_network_transmit_errors_total", MetricType.Counter, "Cumulative count of errors encountered while transmitting.", ExtraLabel: PerInterface),
        // The beancounters (docs/partition-view.md, "Accounting"): one sample per row and column
        // the kernel keeps a counter for; an absent counter or an unlimited limit has no sample.
        new("container_beancounter_held", MetricType.Gauge, "Beancounter: what the cgroup holds now of the resource (its unit is the resource's: bytes, processes, ns, operations).", ExtraLabel: PerResource),
        new("container_beancounter_maxheld", MetricType.Gauge, "Beancounter: the most the cgroup has held of the resource.", ExtraLabel: PerResource),
        new("container_beancounter_limit", MetricType.Gauge, "Beancounter: the cgroup's limit of the resource (no sample: no limit).", ExtraLabel: PerResource),
        new("container_beancounter_failcnt", MetricType.Counter, "Beancounter: how often the resource's limit refused the cgroup (the kernel's own fail or max-event count).", ExtraLabel: PerResource),
    ];

    private static readonly Dictionary<string, Descriptor> ByName = All.ToDictionary(d => d.Name, StringComparer.Ordinal);

    public static IEnumerable<MetricDescriptor> Descriptors() => All.Select(d => new MetricDescriptor
    {
        Name = d.Name,
        Help = d.Help,
        LabelKeys = { LabelKeys, d.ExtraLabel is { } extra ? [extra] : [] },
    });

    /// <summary>Builds samples with one set of labels and one timestamp.</summary>
    public sealed class Samples(IReadOnlyList<string> labels, long timestampNanos)
    {
        public List<Metric> Metrics { get; } = [];

        /// <param name="extraLabel">The value of the descriptor's <see cref="Descriptor.ExtraLabel"/>:
        /// required when it has one, not allowed otherwise.</param>
        public void Add(string name, ulong value, string? extraLabel = null)
        {
            var d = ByName[name];
            if (d.ExtraLabel is not null != extraLabel is not null)
                throw new ArgumentException($"metric {name}: {d.ExtraLabel ?? "extra"} label {(d.ExtraLabel is not null ? "required" : "not allowed")}");
            var m = new Metric { Name = name, Timestamp = timestampNanos, MetricType = d.Type, Value = new UInt64Value { Value = value } };
            m.LabelValues.AddRange(labels);
            if (extraLabel is not null) m.LabelValues.Add(extraLabel);
            Metrics.Add(m);
        }

        /// <summary>Every counter of the beancounter rows under container_beancounter_* (label
        /// resource), and physpages' max held and fail count under cAdvisor's own names.</summary>
        public void AddBeancounters(IEnumerable<BeancounterRow> rows)
        {
            foreach (var r in rows)
            {
                foreach (var (column, value) in BeancounterMetrics.Columns(r))
                    Add($"container_beancounter_{column}", value, r.Resource);
                if (r.Resource != "physpages") continue;
                if (r.MaxHeld is { } max) Add("container_memory_max_usage_bytes", max);
                if (r.FailCount is { } fail) Add("container_memory_failcnt", fail);
            }
        }

        /// <summary>CPU and memory of a cgroup (a container's or the pod's).</summary>
        public void AddCgroup(CgroupStats s)
        {
            Add("container_cpu_usage_seconds_total", s.CpuUsageNanos / 1_000_000_000);
            Add("container_cpu_user_seconds_total", s.CpuUserNanos / 1_000_000_000);
            Add("container_cpu_system_seconds_total", s.CpuSystemNanos / 1_000_000_000);
            Add("container_cpu_cfs_periods_total", s.CpuPeriods);
            Add("container_cpu_cfs_throttled_periods_total", s.CpuThrottledPeriods);
            Add("container_cpu_cfs_throttled_seconds_total", s.CpuThrottledNanos / 1_000_000_000);
            Add("container_memory_usage_bytes", s.MemoryUsageBytes);
            Add("container_memory_working_set_bytes", s.MemoryWorkingSetBytes);
            Add("container_memory_rss", s.MemoryRssBytes);
            Add("container_memory_cache", s.MemoryCacheBytes);
            Add("container_memory_swap", s.SwapUsageBytes);
            // cAdvisor reports "no limit" as 0; an unset limit reads back as a huge page-counter maximum.
            Add("container_spec_memory_limit_bytes", s.MemoryLimitBytes >= long.MaxValue / 2 ? 0 : s.MemoryLimitBytes);
            Add("container_oom_events_total", s.OomKills);
        }

        public void AddNetwork(IEnumerable<InterfaceCounters> interfaces)
        {
            foreach (var i in interfaces.Where(i => i.Name != "lo"))
            {
                Add("container_network_receive_bytes_total", i.RxBytes, i.Name);
                Add("container_network_receive_packets_total", i.RxPackets, i.Name);
                Add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name);
                Add("container_network_receive_errors_total", i.RxErrors, i.Name);
                Add("container_network_transmit_bytes_total", i.TxBytes, i.Name);
                Add("container_network_transmit_packets_total", i.TxPackets, i.Name);
                Add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name);
                Add("container_network_transmit_errors_total", i.TxErrors, i.Name);
            }
        }
    }
}
