using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Proto.Collector.Trace.V1;
using OpenTelemetry.Proto.Trace.V1;

namespace CriRuntime.Tests.E2E.Observability;

/// <summary>An OTLP trace receiver in the test process, on loopback: OTLP/gRPC (the published
/// `opentelemetry.proto.collector.trace.v1.TraceService/Export`, HTTP/2 without TLS) or
/// OTLP/HTTP (POST /v1/traces, a binary protobuf ExportTraceServiceRequest). Every span it is
/// sent is kept; <see cref="WaitForAsync"/> waits for an export that completes a condition.</summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Lock _lock = new();
    private readonly List<Span> _spans = [];
    private readonly Channel<int> _exports = Channel.CreateUnbounded<int>();
    private int _requests;

    public int Port { get; }
    public string Protocol { get; }
    /// <summary>The URL for [telemetry] otlp_endpoint (the base URL for http/protobuf).</summary>
    public string Endpoint => $"http://127.0.0.1:{Port}";
    public int Requests => Volatile.Read(ref _requests);

    private OtlpReceiver(string protocol)
    {
        Protocol = protocol;
        Port = PrometheusServer.FreePort();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, Port,
            l => l.Protocols = protocol == "grpc" ? HttpProtocols.Http2 : HttpProtocols.Http1));
        if (protocol == "grpc") builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        _app = builder.Build();
        if (protocol == "grpc")
            _app.MapGrpcService<GrpcTraceService>();
        else
            _app.MapPost("/v1/traces", async ctx =>
            {
                var request = ExportTraceServiceRequest.Parser.ParseFrom(await ReadAllAsync(ctx.Request.Body));
                Received(request);
                ctx.Response.ContentType = "application/x-protobuf";
                await ctx.Response.Body.WriteAsync(new ExportTraceServiceResponse().ToByteArray());
            });
    }

    public static async Task<OtlpReceiver> StartAsync(string protocol)
    {
        var r = new OtlpReceiver(protocol);
        await r._app.StartAsync();
        return r;
    }

    public IReadOnlyList<Span> Spans
    {
        get { lock (_lock) return [.. _spans]; }
    }

    /// <summary>The spans received so far once <paramref name="done"/> holds for them; checked
    /// after every export until the deadline (the daemon exports in batches, not per span).</summary>
    public async Task<IReadOnlyList<Span>> WaitForAsync(Func<IReadOnlyList<Span>, bool> done, TimeSpan deadline)
    {
        using var cts = new CancellationTokenSource(deadline);
        while (true)
        {
            var spans = Spans;
            if (done(spans)) return spans;
            try { await _exports.Reader.ReadAsync(cts.Token); }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"the spans wanted did not arrive within {deadline.TotalSeconds} s; received: "
                    + string.Join(", ", Spans.Select(s => $"{s.Name} ({Convert.ToHexStringLower(s.TraceId.Span)})")));
            }
        }
    }

    private void Received(ExportTraceServiceRequest request)
    {
        Interlocked.Increment(ref _requests);
        lock (_lock)
            _spans.AddRange(request.ResourceSpans.SelectMany(r => r.ScopeSpans).SelectMany(s => s.Spans));
        _exports.Writer.TryWrite(0);
    }

    private static async Task<byte[]> ReadAllAsync(Stream body)
    {
        using var ms = new MemoryStream();
        await body.CopyToAsync(ms);
        return ms.ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class GrpcTraceService(OtlpReceiver receiver) : TraceService.TraceServiceBase
    {
        public override Task<ExportTraceServiceResponse> Export(ExportTraceServiceRequest request, ServerCallContext context)
        {
            receiver.Received(request);
            return Task.FromResult(new ExportTraceServiceResponse());
        }
    }
}
