using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Network;

namespace CriRuntime.Metrics;

/// <summary>The metrics ListPodSandboxMetrics emits, named and typed as cAdvisor names them so
/// the kubelet's /metrics/cadvisor reads the same with PodAndContainerStatsFromCRI on. Every
/// metric a sample carries is listed here (ListMetricDescriptors answers from this table), and
/// its label values follow <see cref="LabelKeys"/> (plus "interface" for network metrics).
/// Counters of seconds are whole seconds: the CRI value is an unsigned integer.</summary>
public static class CadvisorMetrics
{
    /// <summary>container: the container's name ("" for the pod's own cgroup); id: the container
    /// id (the pod id for pod-level samples); image: the image the kubelet asked for.</summary>
    public static readonly IReadOnlyList<string> LabelKeys = ["container", "id", "image", "namespace", "pod"];

    public sealed record Descriptor(string Name, MetricType Type, string Help, bool PerInterface = false);

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
        new("container_processes", MetricType.Gauge, "Number of processes running inside the container."),
        new("container_fs_usage_bytes", MetricType.Gauge, "Number of bytes consumed by the container's writable layer."),
        new("container_fs_inodes_used", MetricType.Gauge, "Number of inodes used by the container's writable layer."),
        new("container_start_time_seconds", MetricType.Gauge, "Start time of the container since unix epoch in seconds."),
        new("container_network_receive_bytes_total", MetricType.Counter, "Cumulative count of bytes received.", PerInterface: true),
        new("container_network_receive_packets_total", MetricType.Counter, "Cumulative count of packets received.", PerInterface: true),
        new("container_network_receive_packets_dropped_total", MetricType.Counter, "Cumulative count of packets dropped while receiving.", PerInterface: true),
        new("container_network_receive_errors_total", MetricType.Counter, "Cumulative count of errors encountered while receiving.", PerInterface: true),
        new("container_network_transmit_bytes_total", MetricType.Counter, "Cumulative count of bytes transmitted.", PerInterface: true),
        new("container_network_transmit_packets_total", MetricType.Counter, "Cumulative count of packets transmitted.", PerInterface: true),
        new("container_network_transmit_packets_dropped_total", MetricType.Counter, "Cumulative count of packets dropped while transmitting.", PerInterface: true),
        new("container_network_transmit_errors_total", MetricType.Counter, "Cumulative count of errors encountered while transmitting.", PerInterface: true),
    ];

    private static readonly Dictionary<string, Descriptor> ByName = All.ToDictionary(d => d.Name, StringComparer.Ordinal);

    public static IEnumerable<MetricDescriptor> Descriptors() => All.Select(d => new MetricDescriptor
    {
        Name = d.Name,
        Help = d.Help,
        LabelKeys = { LabelKeys, d.PerInterface ? ["interface"] : [] },
    });

    /// <summary>Builds samples with one set of labels and one timestamp.</summary>
    public sealed class Samples(IReadOnlyList<string> labels, long timestampNanos)
    {
        public List<Metric> Metrics { get; } = [];

        public void Add(string name, ulong value, string? networkInterface = null)
        {
            var d = ByName[name];
            if (d.PerInterface != networkInterface is not null)
                throw new ArgumentException($"metric {name}: interface label {(d.PerInterface ? "required" : "not allowed")}");
            var m = new Metric { Name = name, Timestamp = timestampNanos, MetricType = d.Type, Value = new UInt64Value { Value = value } };
            m.LabelValues.AddRange(labels);
            if (networkInterface is not null) m.LabelValues.Add(networkInterface);
            Metrics.Add(m);
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
