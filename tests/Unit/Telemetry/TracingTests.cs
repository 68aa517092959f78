using System.Diagnostics;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Telemetry;
using OpenTelemetry.Trace;

namespace CriRuntime.Tests.Unit.Telemetry;

public class TracingTests
{
    /// <summary>Records the CriRuntime source's spans of one trace (other tests may trace at the same time).</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly ActivityListener _listener;
        private readonly List<Activity> _spans = [];

        public Recorder()
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = s => s.Name == Tracing.SourceName,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a => { lock (_spans) _spans.Add(a); },
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public List<Activity> Of(ActivityTraceId trace) { lock (_spans) return [.. _spans.Where(s => s.TraceId == trace)]; }

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public void StartRpc_ContinuesTheCallersTraceparent_AsAServerSpanWithRpcAttributes()
    {
        using var recorder = new Recorder();
        var trace = ActivityTraceId.CreateRandom();
        var caller = ActivitySpanId.CreateRandom();
        using (var span = Tracing.StartRpc("/runtime.v1.RuntimeService/CreateContainer", $"00-{trace.ToHexString()}-{caller.ToHexString()}-01", "vendor=x"))
        {
            Assert.NotNull(span);
            span.Describe(new CreateContainerRequest { PodSandboxId = "pod1", Config = new ContainerConfig { Image = new ImageSpec { Image = "busybox" }, Metadata = new ContainerMetadata { Name = "app" } } });
            span.Describe(new CreateContainerResponse { ContainerId = "ctr1" });
            span.Outcome(Grpc.Core.StatusCode.OK);
        }
        var s = Assert.Single(recorder.Of(trace));
        Assert.Equal(caller, s.ParentSpanId);
        Assert.Equal(ActivityKind.Server, s.Kind);
        Assert.Equal("runtime.v1.RuntimeService/CreateContainer", s.DisplayName);
        Assert.Equal("vendor=x", s.TraceStateString);
        Assert.Equal("CreateContainer", s.GetTagItem("rpc.method"));
        Assert.Equal("runtime.v1.RuntimeService", s.GetTagItem("rpc.service"));
        Assert.Equal("pod1", s.GetTagItem("criruntime.pod_sandbox_id"));
        Assert.Equal("ctr1", s.GetTagItem("container.id"));
        Assert.Equal("busybox", s.GetTagItem("container.image.name"));
        Assert.Equal("app", s.GetTagItem("criruntime.container_name"));
        Assert.Equal(0, s.GetTagItem("rpc.grpc.status_code"));
        Assert.Equal(ActivityStatusCode.Unset, s.Status);
    }

    [Fact]
    public void StartRpc_IgnoresAnActivityInForce_AndAFailedCallIsAnError()
    {
        using var recorder = new Recorder();
        using var outer = new Activity("http-layer").Start();
        var trace = ActivityTraceId.CreateRandom();
        var caller = ActivitySpanId.CreateRandom();
        using (var span = Tracing.StartRpc("/runtime.v1.RuntimeService/ContainerStatus", $"00-{trace.ToHexString()}-{caller.ToHexString()}-01", null))
            span.Outcome(Grpc.Core.StatusCode.NotFound, "container x not found");
        var s = Assert.Single(recorder.Of(trace));
        Assert.Equal(caller, s.ParentSpanId);
        Assert.Equal(ActivityStatusCode.Error, s.Status);
        Assert.Equal("NotFound: container x not found", s.StatusDescription);
        Assert.Equal((int)Grpc.Core.StatusCode.NotFound, s.GetTagItem("rpc.grpc.status_code"));
    }

    [Fact]
    public void Record_MakesAChildSpanWithTheReportedTimes()
    {
        using var recorder = new Recorder();
        var trace = ActivityTraceId.CreateRandom();
        var start = DateTimeOffset.UtcNow.AddMilliseconds(-20);
        var end = start.AddMilliseconds(7);
        using (var parent = Tracing.StartRpc("/runtime.v1.RuntimeService/StartContainer", $"00-{trace.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01", null))
            parent.Record("shim.exec", start, end);
        var spans = recorder.Of(trace);
        var parentSpan = Assert.Single(spans, s => s.Kind == ActivityKind.Server);
        var child = Assert.Single(spans, s => s.DisplayName == "shim.exec");
        Assert.Equal(parentSpan.SpanId, child.ParentSpanId);
        Assert.Equal(start.UtcDateTime, child.StartTimeUtc);
        Assert.Equal(TimeSpan.FromMilliseconds(7), child.Duration);
    }

    [Fact]
    public void SpanHelpers_AreNullSafe_SoTracingOffCostsANullCheck()
    {
        // Tracing off: Start/StartRpc return null and every helper takes that.
        Activity? none = null;
        none.Describe(new RunPodSandboxRequest());
        none.Outcome(Grpc.Core.StatusCode.Internal, "x");
        none.Record("shim.exec", DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);
        Assert.False(none.Failed(new InvalidOperationException("x")));
    }

    [Theory]
    [InlineData("grpc", "http://collector:4317", "http://collector:4317/")]
    [InlineData("http/protobuf", "http://collector:4318", "http://collector:4318/v1/traces")]
    [InlineData("http/protobuf", "http://collector:4318/", "http://collector:4318/v1/traces")]
    [InlineData("http/protobuf", "https://otlp.example/custom/traces", "https://otlp.example/custom/traces")]
    public void Endpoint_AppendsV1TracesToABareHttpProtobufUrl(string protocol, string configured, string expected) =>
        Assert.Equal(expected, TraceExport.Endpoint(new TelemetrySection { OtlpEndpoint = configured, OtlpProtocol = protocol }).ToString());

    [Fact]
    public void ConfiguredRatioSampler_FollowsTheRatioInForce()
    {
        var ratio = 0.0;
        var sampler = new ConfiguredRatioSampler(() => ratio);
        var p = new SamplingParameters(default, ActivityTraceId.CreateRandom(), "x", ActivityKind.Server);
        Assert.Equal(SamplingDecision.Drop, sampler.ShouldSample(p).Decision);
        ratio = 1.0;
        Assert.Equal(SamplingDecision.RecordAndSample, sampler.ShouldSample(p).Decision);
    }
}
