using System.Diagnostics;
using CriRuntime.Errors;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;
using CriRuntime.Metrics;
using CriRuntime.Telemetry;

namespace CriRuntime.Server;

/// <summary>The one boundary between the daemon and gRPC: every call is logged once with its
/// method, duration, outcome and the pod/container it names, and typed errors become status
/// codes. Anything untyped is a bug: Internal, logged with its stack. Each call's duration and
/// status also go to the request histogram (<see cref="RuntimeMetrics.Rpc"/>), and each call is
/// a server span when tracing is on (<see cref="Tracing.StartRpc"/>).
/// Unary calls that change something also tell <see cref="IdleTrim"/> when a burst is over
/// (reads such as the kubelet's relists and Status, and streams such as GetContainerEvents, which
/// stay open for good, are not counted).</summary>
public sealed partial class CriErrorInterceptor(ILogger<CriErrorInterceptor> log, RuntimeMetrics? metrics = null, IdleTrim? idle = null) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        var paused = GC.GetTotalPauseDuration();
        var subject = Subject(request);
        using var scope = SubjectScope(subject);
        using var span = StartSpan(context, request);
        var counted = idle is not null && !IdleTrim.IsRead(context.Method);
        if (counted) idle!.Enter();
        try
        {
            var response = await continuation(request, context).ConfigureAwait(false);
            span.Describe(response);
            Ok(context.Method, started, subject, span, GC.GetTotalPauseDuration() - paused);
            return response;
        }
        catch (Exception e)
        {
            throw Map(e, context.Method, started, subject, span);
        }
        finally
        {
            if (counted) idle!.Exit();
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        var subject = Subject(request);
        using var scope = SubjectScope(subject);
        using var span = StartSpan(context, request);
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
            Ok(context.Method, started, subject, span);
        }
        catch (Exception e)
        {
            throw Map(e, context.Method, started, subject, span);
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        using var span = StartSpan(context, null);
        try
        {
            var response = await continuation(requestStream, context).ConfigureAwait(false);
            Ok(context.Method, started, "", span);
            return response;
        }
        catch (Exception e)
        {
            throw Map(e, context.Method, started, "", span);
        }
    }

    /// <summary>The request's server span (null when tracing is off), continuing the caller's
    /// `traceparent` metadata.</summary>
    private static Activity? StartSpan(ServerCallContext context, object? request)
    {
        if (!Tracing.Enabled) return null; // not even the metadata is read (it is materialised on first use)
        var span = Tracing.StartRpc(context.Method, context.RequestHeaders.GetValue("traceparent"), context.RequestHeaders.GetValue("tracestate"));
        if (request is not null) span.Describe(request);
        return span;
    }

    /// <param name="gcPaused">How long the GC stopped every thread while the call ran (unary
    /// calls): a slow call says whether that is where its time went.</param>
    private void Ok(string method, long started, string subject, Activity? span, TimeSpan gcPaused = default)
    {
        span.Outcome(StatusCode.OK);
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics?.Rpc(method, nameof(StatusCode.OK), elapsed);
        if (gcPaused.TotalMilliseconds >= 1)
            LogOkGcPaused(method, elapsed.TotalMilliseconds, gcPaused.TotalMilliseconds, subject);
        else
            LogOk(method, elapsed.TotalMilliseconds, subject);
    }

    private RpcException Map(Exception e, string method, long started, string subject, Activity? span)
    {
        var elapsed = Stopwatch.GetElapsedTime(started);
        var ms = elapsed.TotalMilliseconds;
        var status = ToStatus(e, method);
        span.Outcome(status.StatusCode, status.Detail);
        metrics?.Rpc(method, status.StatusCode.ToString(), elapsed);
        if (status.StatusCode == StatusCode.Internal)
            LogInternal(e, method, ms, subject);
        else if (status.StatusCode == StatusCode.Cancelled)
            LogCancelled(method, ms, subject);
        else
            LogFailed(method, ms, subject, status.StatusCode, status.Detail);
        return e as RpcException is { } re && re.StatusCode == status.StatusCode && re.Status.Detail == status.Detail
            ? re
            : new RpcException(status);
    }

    /// <summary>The status a caller sees for an exception. Pure, so the mapping is unit-tested.</summary>
    public static Status ToStatus(Exception e, string method) => e switch
    {
        CriException c => new Status(Code(c.Kind), c.Message),
        // Grpc.AspNetCore's generated base methods throw Unimplemented with no detail: name the RPC.
        RpcException { StatusCode: StatusCode.Unimplemented } r when string.IsNullOrEmpty(r.Status.Detail)
            => new Status(StatusCode.Unimplemented, $"{method} is not implemented by criruntime"),
        RpcException r => r.Status,
        OperationCanceledException => new Status(StatusCode.Cancelled, "the call was cancelled"),
        _ => new Status(StatusCode.Internal, $"internal error: {e.Message}"),
    };

    public static StatusCode Code(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidArgument => StatusCode.InvalidArgument,
        ErrorKind.NotFound => StatusCode.NotFound,
        ErrorKind.AlreadyExists => StatusCode.AlreadyExists,
        ErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
        ErrorKind.Unavailable => StatusCode.Unavailable,
        ErrorKind.DeadlineExceeded => StatusCode.DeadlineExceeded,
        ErrorKind.ResourceExhausted => StatusCode.ResourceExhausted,
        ErrorKind.Aborted => StatusCode.Aborted,
        ErrorKind.Unimplemented => StatusCode.Unimplemented,
        _ => StatusCode.Unknown,
    };

    /// <summary>The pod or container a request is about, read through the protobuf descriptor so
    /// every RPC is covered without a per-message switch.</summary>
    internal static string Subject(object request)
    {
        if (request is not IMessage m) return "";
        foreach (var name in SubjectFields)
        {
            var field = m.Descriptor.FindFieldByName(name);
            if (field is null || field.FieldType != Google.Protobuf.Reflection.FieldType.String || field.IsRepeated) continue;
            if (field.Accessor.GetValue(m) is string { Length: > 0 } v) return $"{name}={v}";
        }
        return "";
    }

    /// <summary>The pod/container id as a logging scope for everything the call logs (json logs show it).</summary>
    private IDisposable? SubjectScope(string subject)
    {
        var eq = subject.IndexOf('=');
        return eq > 0 ? log.BeginScope(new Scope(subject[..eq], subject[(eq + 1)..])) : null;
    }

    /// <summary>One key/value scope: json logs write it as {"Message":"container_id=ID","container_id":"ID"}.</summary>
    private sealed class Scope(string key, string value) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public KeyValuePair<string, object?> this[int index] => index == 0 ? new(key, value) : throw new ArgumentOutOfRangeException(nameof(index));
        public int Count => 1;
        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() { yield return this[0]; }
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
        public override string ToString() => $"{key}={value}";
    }

    private static readonly string[] SubjectFields = ["container_id", "pod_sandbox_id", "migration_id"];

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "{Method} ok in {Ms:F1} ms {Subject}")]
    private partial void LogOk(string method, double ms, string subject);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "{Method} ok in {Ms:F1} ms ({GcMs:F1} ms of it stopped by the GC) {Subject}")]
    private partial void LogOkGcPaused(string method, double ms, double gcMs, string subject);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "{Method} failed in {Ms:F1} ms {Subject}: {Code} {Detail}")]
    private partial void LogFailed(string method, double ms, string subject, StatusCode code, string detail);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "{Method} failed in {Ms:F1} ms {Subject} with an internal error")]
    private partial void LogInternal(Exception e, string method, double ms, string subject);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "{Method} cancelled after {Ms:F1} ms {Subject}")]
    private partial void LogCancelled(string method, double ms, string subject);
}
