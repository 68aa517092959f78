using System.Diagnostics;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace CriRuntime.Telemetry;

/// <summary>The daemon's spans (System.Diagnostics.ActivitySource "CriRuntime"). With
/// [telemetry] otlp_endpoint empty nothing listens to the source: <see cref="Start"/> returns
/// null and every span call below is a null check (docs/observability.md, "Traces").</summary>
public static class Tracing
{
    public const string SourceName = "CriRuntime";

    private static readonly ActivitySource Source = new(SourceName);

    /// <summary>Whether anything records spans (tracing on).</summary>
    public static bool Enabled => Source.HasListeners();

    /// <summary>A child of the span in force (the request's, or the step that runs it).</summary>
    public static Activity? Start(string name, ActivityKind kind = ActivityKind.Internal) => Source.StartActivity(name, kind);

    /// <summary>The server span of one CRI request, continuing the caller's W3C trace context
    /// (gRPC metadata `traceparent`, `tracestate`) when it sent one. Not parented to whatever
    /// Activity the HTTP layer may have made, so the caller's span id is the parent.</summary>
    public static Activity? StartRpc(string method, string? traceparent, string? tracestate)
    {
        if (!Source.HasListeners()) return null;
        ActivityContext.TryParse(traceparent, tracestate, isRemote: true, out var parent);
        var previous = Activity.Current;
        Activity.Current = null;
        var span = Source.StartActivity(method.TrimStart('/'), ActivityKind.Server, parent);
        if (span is null) Activity.Current = previous;
        if (span is not { IsAllDataRequested: true }) return span;
        var slash = method.LastIndexOf('/');
        span.SetTag("rpc.system", "grpc");
        span.SetTag("rpc.service", slash > 0 ? method[1..slash] : "");
        span.SetTag("rpc.method", method[(slash + 1)..]);
        return span;
    }

    /// <summary>What a request or its response names: the pod sandbox, the container, the image.</summary>
    public static void Describe(this Activity? span, object message)
    {
        if (span is not { IsAllDataRequested: true } || message is not IMessage m) return;
        Tag(span, "criruntime.pod_sandbox_id", String(m, "pod_sandbox_id"));
        Tag(span, "container.id", String(m, "container_id"));
        var config = Message(m, "config");
        Tag(span, "container.image.name", ImageName(Message(m, "image") ?? Message(config, "image")));
        var metadata = Message(config, "metadata");
        if (metadata is not null && m.Descriptor.Name == "RunPodSandboxRequest")
        {
            Tag(span, "k8s.pod.name", String(metadata, "name"));
            Tag(span, "k8s.namespace.name", String(metadata, "namespace"));
        }
        else Tag(span, "criruntime.container_name", String(metadata, "name"));
    }

    /// <summary>Ends a request's span with its gRPC status code (numeric, as OpenTelemetry's RPC
    /// conventions say) and, when it failed, the status detail.</summary>
    public static void Outcome(this Activity? span, Grpc.Core.StatusCode code, string? detail = null)
    {
        if (span is null) return;
        span.SetTag("rpc.grpc.status_code", (int)code);
        if (code != Grpc.Core.StatusCode.OK) span.SetStatus(ActivityStatusCode.Error, $"{code}: {detail}");
    }

    /// <summary>Marks the span failed; returns false so it can sit in an exception filter
    /// (`catch (Exception e) when (span.Failed(e))`) and never catch anything.</summary>
    public static bool Failed(this Activity? span, Exception e)
    {
        if (span is null) return false;
        span.SetStatus(ActivityStatusCode.Error, e.Message);
        span.SetTag("error.type", e.GetType().Name);
        return false;
    }

    /// <summary>A finished step another process timed (the shim's phases), as a child of
    /// <paramref name="parent"/> with the times it reported.</summary>
    public static void Record(this Activity? parent, string name, DateTimeOffset start, DateTimeOffset end)
    {
        if (parent is not { IsAllDataRequested: true }) return;
        using var span = Source.StartActivity(name, ActivityKind.Internal, parent.Context, startTime: start);
        if (span is null) return;
        span.SetEndTime(end.UtcDateTime);
    }

    private static void Tag(Activity span, string key, string? value)
    {
        if (!string.IsNullOrEmpty(value)) span.SetTag(key, value);
    }

    private static string? String(IMessage? m, string field) =>
        m?.Descriptor.FindFieldByName(field) is { FieldType: FieldType.String, IsRepeated: false } f ? f.Accessor.GetValue(m) as string : null;

    /// <summary>An ImageSpec's name as the user wrote it: the kubelet sends the resolved image id
    /// in `image` and the pod spec's name in `user_specified_image`.</summary>
    private static string? ImageName(IMessage? spec) =>
        String(spec, "user_specified_image") is { Length: > 0 } user ? user : String(spec, "image");

    private static IMessage? Message(IMessage? m, string field) =>
        m?.Descriptor.FindFieldByName(field) is { FieldType: FieldType.Message, IsRepeated: false, IsMap: false } f ? f.Accessor.GetValue(m) as IMessage : null;
}
