using System.Diagnostics.Metrics;
using CriRuntime.Metrics;
using CriRuntime.State;

namespace CriRuntime.Tests.Unit.Metrics;

public class RuntimeMetricsTests
{
    private sealed class Factory : IMeterFactory
    {
        private readonly List<Meter> _meters = [];
        public Meter Create(MeterOptions options)
        {
            var m = new Meter(options);
            _meters.Add(m);
            return m;
        }
        public void Dispose() { foreach (var m in _meters) m.Dispose(); }
    }

    [Fact]
    public void Rpc_IsRecordedInSeconds_WithServiceMethodAndStatusAsSeparateLabels()
    {
        using var factory = new Factory();
        var metrics = new RuntimeMetrics(factory);
        var seen = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Name == RuntimeMetrics.MeterName) l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => seen.Add((i.Name, v, tags.ToArray().ToDictionary(t => t.Key, t => t.Value))));
        listener.Start();

        metrics.Rpc("/runtime.v1.RuntimeService/RunPodSandbox", "OK", TimeSpan.FromMilliseconds(250));

        var (name, value, tags) = Assert.Single(seen);
        Assert.Equal("criruntime.grpc.server.duration", name);
        Assert.Equal(0.25, value, 6);
        Assert.Equal("runtime.v1.RuntimeService", tags["rpc.service"]);
        Assert.Equal("RunPodSandbox", tags["rpc.method"]);
        Assert.Equal("OK", tags["grpc.status"]);
    }

    [Fact]
    public void ByState_CountsEveryState_ZerosIncluded()
    {
        var m = StateGauges.ByState([ContainerPhase.Running, ContainerPhase.Running, ContainerPhase.Exited], Enum.GetValues<ContainerPhase>()).ToList();
        var byState = m.ToDictionary(x => (string)x.Tags.ToArray().Single(t => t.Key == "state").Value!, x => x.Value);
        Assert.Equal(new Dictionary<string, int> { ["created"] = 0, ["running"] = 2, ["exited"] = 1, ["unknown"] = 0 }, byState);
    }
}
