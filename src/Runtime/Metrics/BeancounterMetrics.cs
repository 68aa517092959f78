using System.Diagnostics.Metrics;
using CriRuntime.Accounting;
using CriRuntime.State;

namespace CriRuntime.Metrics;

/// <summary>The beancounters as metrics: the CRI's container_beancounter_* (through
/// <see cref="CadvisorMetrics.Samples.AddBeancounters"/>) and the Prometheus endpoint's
/// criruntime_beancounter_* (<see cref="BeancounterGauges"/>) carry the same columns.</summary>
public static class BeancounterMetrics
{
    public static readonly IReadOnlyList<string> ColumnNames = ["held", "maxheld", "limit", "failcnt"];

    /// <summary>The columns of a row the kernel keeps a counter for. A counter the cgroup lacks
    /// has no sample (never 0), nor has a limit that is "max": a missing limit sample is no limit.</summary>
    public static IEnumerable<(string Column, ulong Value)> Columns(BeancounterRow row)
    {
        if (row.Held is { } held) yield return ("held", held);
        if (row.MaxHeld is { } max) yield return ("maxheld", max);
        if (row.Limit is { } limit && limit != BeancounterRow.Unlimited) yield return ("limit", limit);
        if (row.FailCount is { } fail) yield return ("failcnt", fail);
    }
}

/// <summary>criruntime.beancounter.{held,maxheld,limit} (gauges) and .failcnt (a counter) of every
/// ready pod's cgroup and its running containers', labelled namespace, pod, container ("" for the
/// pod's own cgroup) and resource; read from the cgroup files when Prometheus scrapes, never on a
/// timer. The four instruments of one scrape share one read (a read is reused for a second).</summary>
public sealed class BeancounterGauges
{
    private const long ReuseMillis = 1000;

    private readonly PodSandboxStore _pods;
    private readonly ContainerStore _containers;
    private readonly Func<string, IReadOnlyList<BeancounterRow>> _read;
    private readonly Lock _lock = new();
    private (long At, List<(KeyValuePair<string, object?>[] Labels, BeancounterRow Row)> Rows)? _last;

    public BeancounterGauges(IMeterFactory factory, PodSandboxStore pods, ContainerStore containers)
        : this(factory, pods, containers, BeancounterSource.Host.Read) { }

    internal BeancounterGauges(IMeterFactory factory, PodSandboxStore pods, ContainerStore containers, Func<string, IReadOnlyList<BeancounterRow>> read)
    {
        (_pods, _containers, _read) = (pods, containers, read);
        var meter = factory.Create(RuntimeMetrics.MeterName);
        meter.CreateObservableGauge("criruntime.beancounter.held", () => Observe("held"), null,
            "What a pod's or container's cgroup holds of a resource now (docs/partition-view.md).");
        meter.CreateObservableGauge("criruntime.beancounter.maxheld", () => Observe("maxheld"), null,
            "The most a pod's or container's cgroup has held of a resource.");
        meter.CreateObservableGauge("criruntime.beancounter.limit", () => Observe("limit"), null,
            "A pod's or container's limit of a resource (no sample: no limit).");
        meter.CreateObservableCounter("criruntime.beancounter.failcnt", () => Observe("failcnt"), null,
            "How often a resource's limit refused a pod's or container's cgroup (the kernel's own counter).");
    }

    internal IEnumerable<Measurement<double>> Observe(string column)
    {
        foreach (var (labels, row) in Snapshot())
            foreach (var (c, value) in BeancounterMetrics.Columns(row))
                if (c == column) yield return new Measurement<double>(value, labels);
    }

    private List<(KeyValuePair<string, object?>[] Labels, BeancounterRow Row)> Snapshot()
    {
        lock (_lock)
        {
            var now = Environment.TickCount64;
            if (_last is { } last && now - last.At < ReuseMillis) return last.Rows;
            var rows = new List<(KeyValuePair<string, object?>[], BeancounterRow)>();
            foreach (var pod in _pods.All.Where(p => p.State == PodState.Ready))
            {
                Add(rows, pod, "", pod.CgroupPath);
                foreach (var c in _containers.InPod(pod.Id).Where(c => c.State == ContainerPhase.Running))
                    Add(rows, pod, c.Name, c.CgroupsPath);
            }
            _last = (now, rows);
            return rows;
        }
    }

    private void Add(List<(KeyValuePair<string, object?>[], BeancounterRow)> rows, PodSandboxRecord pod, string container, string cgroupPath)
    {
        foreach (var row in _read(cgroupPath))
            rows.Add(([new("namespace", pod.Namespace), new("pod", pod.Name), new("container", container), new("resource", row.Resource)], row));
    }
}
