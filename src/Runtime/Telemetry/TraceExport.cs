using CriRuntime.Config;
using OpenTelemetry.Exporter;
using OpenTelemetry.Trace;

namespace CriRuntime.Telemetry;

/// <summary>[telemetry]: the daemon's spans to an OTLP receiver, batched, sampled parent-based
/// with the configured ratio for traces the daemon starts itself.</summary>
public static class TraceExport
{
    /// <param name="ratio">The sampling ratio in force, read per trace (SIGHUP changes it).</param>
    public static TracerProviderBuilder Configure(TracerProviderBuilder tracing, TelemetrySection config, Func<double> ratio) => tracing
        .AddSource(Tracing.SourceName)
        .SetSampler(new ParentBasedSampler(new ConfiguredRatioSampler(ratio)))
        .AddOtlpExporter(o =>
        {
            o.Protocol = config.OtlpProtocol == "http/protobuf" ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
            o.Endpoint = Endpoint(config);
            o.ExportProcessorType = OpenTelemetry.ExportProcessorType.Batch;
            o.BatchExportProcessorOptions.ScheduledDelayMilliseconds = (int)Math.Clamp(config.ExportInterval.TotalMilliseconds, 1, int.MaxValue);
        });

    /// <summary>The URL the exporter posts to. For http/protobuf the configured one is a base URL,
    /// as OTEL_EXPORTER_OTLP_ENDPOINT is: /v1/traces is appended unless the path already names a
    /// route. gRPC takes the receiver's address as it is.</summary>
    internal static Uri Endpoint(TelemetrySection config)
    {
        var uri = new Uri(config.OtlpEndpoint);
        if (config.OtlpProtocol != "http/protobuf" || uri.AbsolutePath.Trim('/').Length > 0) return uri;
        return new UriBuilder(uri) { Path = "/v1/traces" }.Uri;
    }
}

/// <summary>TraceIdRatioBasedSampler with the ratio in force: a new one when the ratio changed.</summary>
internal sealed class ConfiguredRatioSampler(Func<double> ratio) : Sampler
{
    private sealed record Current(double Ratio, TraceIdRatioBasedSampler Sampler);

    private volatile Current? _current;

    public override SamplingResult ShouldSample(in SamplingParameters samplingParameters)
    {
        var r = ratio();
        var c = _current;
        if (c is null || c.Ratio != r) _current = c = new Current(r, new TraceIdRatioBasedSampler(r));
        return c.Sampler.ShouldSample(samplingParameters);
    }
}
