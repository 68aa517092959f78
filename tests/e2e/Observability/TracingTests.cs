using System.Security.Cryptography;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using OpenTelemetry.Proto.Trace.V1;
using SpanStatus = OpenTelemetry.Proto.Trace.V1.Status;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Observability;

/// <summary>[telemetry] otlp_endpoint: the daemon's spans as a real OTLP receiver (the published
/// trace service protos, in this process) gets them, continuing the trace the caller's
/// `traceparent` names — as the kubelet's does when its tracing is on.</summary>
[Collection(RegistryCollection.Name)]
public class TracingTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private const string Rpc = "runtime.v1.RuntimeService/";

    [Fact]
    public async Task OtlpGrpc_OneTrace_HasThePodStartRpcsUnderTheCallersSpan_WithCniAndShimSpansInside()
    {
        await using var receiver = await OtlpReceiver.StartAsync("grpc");
        using var d = Daemon(receiver);
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        // An image another tool (Debian's umoci) wrote; the requests as the kubelet builds them: the
        // resolved image id in image.image, the pod spec's name in user_specified_image.
        var image = _registry.Image("umoci");
        await c.PullAsync(image);
        var imageId = (await c.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image } })).Image.Id;

        var (traceId, callerSpan, headers) = Caller();
        var kubePod = new KubePod { Name = "traced", LogRoot = Path.Combine(d.Dir, "kubelet", "logs") };
        var pod = Kubelet.Sandbox(kubePod);
        var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, headers)).PodSandboxId;
        var ctr = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest
        {
            PodSandboxId = podId, Config = Kubelet.Container(kubePod, "sleeper", imageId, image, ["sleep", "3600"]), SandboxConfig = pod,
        }, headers)).ContainerId;
        await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = ctr }, headers);

        var spans = await receiver.WaitForAsync(all =>
        {
            var names = all.Where(s => Hex(s.TraceId) == traceId).Select(s => s.Name).ToHashSet();
            return names.IsSupersetOf([Rpc + "RunPodSandbox", Rpc + "CreateContainer", Rpc + "StartContainer",
                "cni ADD bridge", "shim create", "shim.init", "shim start", "shim.exec"]);
        }, Deadline);

        // One trace: the three requests, and nothing of them anywhere else.
        var trace = spans.Where(s => Hex(s.TraceId) == traceId).ToList();
        string[] sent = [Rpc + "RunPodSandbox", Rpc + "CreateContainer", Rpc + "StartContainer"];
        Assert.DoesNotContain(spans, s => Hex(s.TraceId) != traceId && sent.Contains(s.Name));
        var rpcs = trace.Where(s => Hex(s.ParentSpanId) == callerSpan).OrderBy(s => s.StartTimeUnixNano).ToList();
        Assert.Equal([Rpc + "RunPodSandbox", Rpc + "CreateContainer", Rpc + "StartContainer"], rpcs.Select(s => s.Name));
        Assert.All(rpcs, s =>
        {
            Assert.Equal(Span.Types.SpanKind.Server, s.Kind);
            Assert.Equal("grpc", Attr(s, "rpc.system"));
            Assert.Equal("runtime.v1.RuntimeService", Attr(s, "rpc.service"));
            Assert.Equal("0", Attr(s, "rpc.grpc.status_code"));
            Assert.NotEqual(SpanStatus.Types.StatusCode.Error, s.Status?.Code ?? SpanStatus.Types.StatusCode.Unset);
        });
        var (run, create, start) = (rpcs[0], rpcs[1], rpcs[2]);
        Assert.Equal("RunPodSandbox", Attr(run, "rpc.method"));
        Assert.Equal(podId, Attr(run, "criruntime.pod_sandbox_id"));
        Assert.Equal("traced", Attr(run, "k8s.pod.name"));
        Assert.Equal(podId, Attr(create, "criruntime.pod_sandbox_id"));
        Assert.Equal(ctr, Attr(create, "container.id"));
        Assert.Equal(image, Attr(create, "container.image.name"));
        Assert.Equal(ctr, Attr(start, "container.id"));

        // CNI ADD of every plugin of the chain, inside RunPodSandbox.
        var cni = trace.Where(s => s.Name.StartsWith("cni ADD ", StringComparison.Ordinal)).ToList();
        Assert.Contains(cni, s => s.Name == "cni ADD bridge" && Attr(s, "cni.plugin") == "bridge");
        Assert.All(cni, s => Inside(run, s));

        // The shim: the daemon's span of starting the shim (`criruntime-monitor launch`) with the phases the shim timed,
        // inside StartContainer (CreateContainer starts no shim).
        var shimCreate = Assert.Single(trace, s => s.Name == "shim create");
        Inside(start, shimCreate);
        Assert.Equal(ctr, Attr(shimCreate, "container.id"));
        var phases = trace.Where(s => Hex(s.ParentSpanId) == Hex(shimCreate.SpanId)).Select(s => s.Name).ToList();
        Assert.Equal(["shim.cgroup", "shim.init", "shim.setup", "shim.spawn"], phases.Order(StringComparer.Ordinal));
        Assert.All(trace.Where(s => Hex(s.ParentSpanId) == Hex(shimCreate.SpanId)), s => Inside(shimCreate, s));
        var shimStart = Assert.Single(trace, s => s.Name == "shim start");
        Inside(start, shimStart);
        Inside(shimStart, Assert.Single(trace, s => s.Name == "shim.exec"));

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task OtlpHttpProtobuf_ExportsTheRequestSpan_ToV1Traces_WithTheCallersTraceId()
    {
        await using var receiver = await OtlpReceiver.StartAsync("http/protobuf");
        using var d = Daemon(receiver);
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();

        var (traceId, callerSpan, headers) = Caller();
        var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = PodConfig("traced-http") }, headers)).PodSandboxId;
        // A failed request is a span too, with its gRPC status.
        await Assert.ThrowsAsync<RpcException>(async () =>
            await c.Runtime.ContainerStatusAsync(new ContainerStatusRequest { ContainerId = "does-not-exist" }, headers));

        var spans = await receiver.WaitForAsync(all =>
            all.Any(s => Hex(s.TraceId) == traceId && s.Name == Rpc + "RunPodSandbox")
            && all.Any(s => Hex(s.TraceId) == traceId && s.Name == Rpc + "ContainerStatus")
            && all.Any(s => Hex(s.TraceId) == traceId && s.Name == "cni ADD bridge"), Deadline);
        var run = Assert.Single(spans, s => Hex(s.TraceId) == traceId && s.Name == Rpc + "RunPodSandbox");
        Assert.Equal(callerSpan, Hex(run.ParentSpanId));
        Assert.Equal(podId, Attr(run, "criruntime.pod_sandbox_id"));
        Inside(run, Assert.Single(spans, s => Hex(s.TraceId) == traceId && s.Name == "cni ADD bridge"));
        var failed = Assert.Single(spans, s => Hex(s.TraceId) == traceId && s.Name == Rpc + "ContainerStatus");
        Assert.Equal(((int)StatusCode.NotFound).ToString(System.Globalization.CultureInfo.InvariantCulture), Attr(failed, "rpc.grpc.status_code"));
        Assert.Equal(SpanStatus.Types.StatusCode.Error, failed.Status.Code);

        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }

    [Fact]
    public async Task EmptyOtlpEndpoint_ExportsNothing_EvenWithOtelEnvironmentPointingAtAReceiver()
    {
        await using var receiver = await OtlpReceiver.StartAsync("grpc");
        using var d = new DaemonProcess();
        File.WriteAllText(Path.Combine(d.DropInDir, "50-telemetry.toml"), "[telemetry]\notlp_endpoint = \"\"\nexport_interval = \"100ms\"\n");
        // Were an exporter made anyway, the SDK would send here (its environment variables).
        d.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint;
        d.Environment["OTEL_TRACES_EXPORTER"] = "otlp";
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using (var c = d.Client())
        {
            var (_, _, headers) = Caller();
            var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = PodConfig("untraced") }, headers)).PodSandboxId;
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
        // A tracing daemon flushes its batch when it stops: after the stop, nothing can still come.
        await d.StopAsync();
        Assert.Equal(0, receiver.Requests);
        Assert.DoesNotContain("traces exported", d.Output, StringComparison.Ordinal);
    }

    private static DaemonProcess Daemon(OtlpReceiver receiver)
    {
        var d = new DaemonProcess();
        File.WriteAllText(Path.Combine(d.DropInDir, "50-telemetry.toml"), $"""
            [telemetry]
            otlp_endpoint = "{receiver.Endpoint}"
            otlp_protocol = "{receiver.Protocol}"
            sampling_ratio = 1.0
            export_interval = "100ms"
            """);
        return d;
    }

    /// <summary>The test's own span: a W3C traceparent (sampled) in the call's metadata.</summary>
    private static (string TraceId, string SpanId, Metadata Headers) Caller()
    {
        var traceId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var spanId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        return (traceId, spanId, new Metadata { { "traceparent", $"00-{traceId}-{spanId}-01" } });
    }

    private static string Hex(Google.Protobuf.ByteString b) => Convert.ToHexStringLower(b.Span);

    private static string? Attr(Span s, string key)
    {
        var v = s.Attributes.FirstOrDefault(a => a.Key == key)?.Value;
        return v?.ValueCase switch
        {
            null => null,
            OpenTelemetry.Proto.Common.V1.AnyValue.ValueOneofCase.StringValue => v.StringValue,
            OpenTelemetry.Proto.Common.V1.AnyValue.ValueOneofCase.IntValue => v.IntValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => v.ToString(),
        };
    }

    /// <summary>The child's parent is <paramref name="parent"/>, and its time lies within the parent's.</summary>
    private static void Inside(Span parent, Span child)
    {
        Assert.Equal(Hex(parent.TraceId), Hex(child.TraceId));
        Assert.True(child.StartTimeUnixNano >= parent.StartTimeUnixNano && child.EndTimeUnixNano <= parent.EndTimeUnixNano,
            $"{child.Name} [{child.StartTimeUnixNano}..{child.EndTimeUnixNano}] is not within {parent.Name} [{parent.StartTimeUnixNano}..{parent.EndTimeUnixNano}]");
        Assert.True(Hex(child.ParentSpanId) == Hex(parent.SpanId), $"{child.Name}'s parent is not {parent.Name}");
    }
}
