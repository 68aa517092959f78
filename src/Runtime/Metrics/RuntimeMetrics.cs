using System.Diagnostics.Metrics;
using CriRuntime.State;

namespace CriRuntime.Metrics;

/// <summary>The daemon's own instruments (System.Diagnostics.Metrics), collected by OpenTelemetry
/// and served in Prometheus text format on [metrics] address (docs/observability.md). Names are
/// OpenTelemetry-style; the Prometheus exporter appends the unit (_seconds, _bytes) and _total
/// for counters. Recording is a no-op while nothing listens (metrics off).</summary>
public sealed class RuntimeMetrics
{
    public const string MeterName = "CriRuntime";

    /// <summary>Seconds, from a millisecond RPC to a slow image pull or checkpoint.</summary>
    private static readonly double[] SecondsBuckets =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    private readonly Histogram<double> _rpc;
    private readonly Counter<long> _pulls;
    private readonly Histogram<double> _pullDuration;
    private readonly Counter<long> _pullBytes;
    private readonly Counter<long> _shimStarts;
    private readonly Histogram<double> _cni;
    private readonly Histogram<double> _checkpoint;

    public RuntimeMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(MeterName);
        var seconds = new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets };
        _rpc = meter.CreateHistogram("criruntime.grpc.server.duration", "s",
            "Duration of CRI requests by method and gRPC status code; its count is the number of requests.", advice: seconds);
        _pulls = meter.CreateCounter<long>("criruntime.image.pulls", null, "Image pulls by outcome (ok, failed).");
        _pullDuration = meter.CreateHistogram("criruntime.image.pull.duration", "s", "Duration of image pulls by outcome.", advice: seconds);
        _pullBytes = meter.CreateCounter<long>("criruntime.image.pull", "By", "Bytes of blobs downloaded from registries.");
        _shimStarts = meter.CreateCounter<long>("criruntime.shim.starts", null, "Container shims started, by outcome (ok, failed).");
        _cni = meter.CreateHistogram("criruntime.cni.duration", "s", "Duration of CNI plugin invocations by command, plugin type and outcome.", advice: seconds);
        _checkpoint = meter.CreateHistogram("criruntime.checkpoint.duration", "s", "Duration of CheckpointContainer's CRIU dump and archive, by outcome.", advice: seconds);
    }

    public void Rpc(string method, string grpcStatus, TimeSpan elapsed)
    {
        // "/runtime.v1.RuntimeService/RunPodSandbox": service and method as separate labels.
        var slash = method.LastIndexOf('/');
        _rpc.Record(elapsed.TotalSeconds,
            new("rpc.service", slash > 0 ? method[1..slash] : ""),
            new("rpc.method", method[(slash + 1)..]),
            new("grpc.status", grpcStatus));
    }

    public void ImagePull(bool ok, TimeSpan elapsed)
    {
        var outcome = new KeyValuePair<string, object?>("outcome", Outcome(ok));
        _pulls.Add(1, outcome);
        _pullDuration.Record(elapsed.TotalSeconds, outcome);
    }

    public void ImageBytes(long bytes) => _pullBytes.Add(bytes);

    public void ShimStart(bool ok) => _shimStarts.Add(1, new KeyValuePair<string, object?>("outcome", Outcome(ok)));

    public void Cni(string command, string plugin, bool ok, TimeSpan elapsed) =>
        _cni.Record(elapsed.TotalSeconds, new("cni.command", command), new("cni.plugin", plugin), new("outcome", Outcome(ok)));

    public void Checkpoint(bool ok, TimeSpan elapsed) =>
        _checkpoint.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("outcome", Outcome(ok)));

    private static string Outcome(bool ok) => ok ? "ok" : "failed";
}

/// <summary>Pods and containers by state, read from the stores at each scrape.</summary>
public sealed class StateGauges
{
    public StateGauges(IMeterFactory factory, PodSandboxStore pods, ContainerStore containers)
    {
        var meter = factory.Create(RuntimeMetrics.MeterName);
        meter.CreateObservableGauge("criruntime.pods", () => ByState(pods.All.Select(p => p.State), Enum.GetValues<PodState>()),
            null, "Pod sandboxes by state (ready, notready).");
        meter.CreateObservableGauge("criruntime.containers", () => ByState(containers.All.Select(c => c.State), Enum.GetValues<ContainerPhase>()),
            null, "Containers by state (created, running, exited, unknown).");
    }

    /// <summary>One measurement per state, zeros included, so a state that empties reads 0 rather than vanishing.</summary>
    internal static IEnumerable<Measurement<int>> ByState<T>(IEnumerable<T> states, T[] all) where T : struct, Enum
    {
        var counts = all.ToDictionary(s => s, _ => 0);
        foreach (var s in states) counts[s]++;
        return counts.Select(kv => new Measurement<int>(kv.Value, new KeyValuePair<string, object?>("state", kv.Key.ToString().ToLowerInvariant())));
    }
}
