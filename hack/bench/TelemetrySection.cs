using System.Globalization;
using System.Net;
using System.Text;

namespace CriRuntime.Bench;

/// <summary>What telemetry costs our daemon: three daemons of the same build, one with telemetry
/// off, one with `[metrics]` on and scraped during the run, one tracing every request (100%
/// sampling) to an OTLP/HTTP sink in the bench. They take turns, pod lifecycle by pod lifecycle,
/// so a slow moment of the shared machine hits all three.</summary>
public sealed class TelemetrySection : IBenchSection
{
    public string Name => "telemetry";
    public string Title => "Telemetry cost";
    public bool UsesRuntimes => false;

    /// <summary>Pod lifecycles per configuration (after one warm-up each).</summary>
    public int Lifecycles { get; init; } = 30;

    private static readonly TimeSpan ScrapeInterval = TimeSpan.FromSeconds(1);
    private readonly List<Result> _results = [];
    private int _scrapes, _exports;
    private long _exportBytes;

    private sealed record Result(string Config, Samples Samples, long RssKb, long HwmKb);

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        var metricsPort = FreePort();
        using var sink = new OtlpSink(FreePort());
        var configs = new (string Label, string Name, string Toml)[]
        {
            ("off", "criruntime-tel-off", ""),
            ("metrics on (scraped every 1 s)", "criruntime-tel-metrics", $"[metrics]\naddress = \"127.0.0.1:{metricsPort}\"\n"),
            ("tracing on, 100% sampled (OTLP http/protobuf)", "criruntime-tel-trace",
                $"[telemetry]\notlp_endpoint = \"{sink.Endpoint}\"\notlp_protocol = \"http/protobuf\"\nsampling_ratio = 1.0\n"),
        };
        var daemons = new List<(string Label, OurRuntime Rt, Samples Samples)>();
        using var scrapeStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Task? scraper = null;
        try
        {
            foreach (var (label, name, toml) in configs)
            {
                var rt = new OurRuntime(Path.Combine(ctx.Env.Dir, name), ctx.DaemonBinary, ctx.Env.CniConfDir, name, toml);
                daemons.Add((label, rt, new Samples()));
                await rt.StartAsync(Path.Combine(ctx.Env.LogDir, name + ".log"));
                var w = new Workloads(rt, ctx.Env);
                await w.PullAsync(ctx.Env.Image("busybox"), ct);
                using var c = w.Client();
                await w.LifecycleAsync(c, "warmup", new Samples(), ct); // first-call costs are not counted
            }
            scraper = ScrapeAsync($"http://127.0.0.1:{metricsPort}/metrics", scrapeStop.Token);
            var clients = daemons.Select(d => new Workloads(d.Rt, ctx.Env).Client()).ToList();
            try
            {
                for (var i = 0; i < Lifecycles; i++)
                    for (var k = 0; k < daemons.Count; k++)
                        await new Workloads(daemons[k].Rt, ctx.Env).LifecycleAsync(clients[k], $"tel-{i}", daemons[k].Samples, ct);
            }
            finally
            {
                foreach (var c in clients) c.Dispose();
            }
            foreach (var (label, rt, samples) in daemons)
            {
                var (rss, hwm) = RssKb(rt.DaemonPid);
                _results.Add(new Result(label, samples, rss, hwm));
            }
        }
        finally
        {
            await scrapeStop.CancelAsync();
            if (scraper is not null) await scraper;
            // SIGTERM: the tracing daemon flushes its last batch on the way out.
            foreach (var d in daemons) await d.Rt.DisposeAsync();
            _exports = sink.Requests;
            _exportBytes = sink.Bytes;
        }
    }

    private async Task ScrapeAsync(string url, CancellationToken ct)
    {
        using var http = new HttpClient();
        using var timer = new PeriodicTimer(ScrapeInterval);
        try
        {
            do
            {
                var text = await http.GetStringAsync(url, ct);
                if (text.Contains("criruntime_grpc_server_duration_seconds", StringComparison.Ordinal)) _scrapes++;
            }
            while (await timer.WaitForNextTickAsync(ct));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>VmRSS and VmHWM (peak) of the daemon, kB.</summary>
    private static (long Rss, long Hwm) RssKb(int pid)
    {
        var status = File.ReadAllText($"/proc/{pid}/status");
        return (Stats.MeminfoKb(status, "VmRSS"), Stats.MeminfoKb(status, "VmHWM"));
    }

    public string Markdown(BenchContext ctx)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"The daemon's added cost of telemetry (`docs/observability.md`): three `criruntime` daemons of the same NativeAOT build, with telemetry off, with `[metrics] address` on and `/metrics` scraped every {ScrapeInterval.TotalSeconds:0} s through the run, and with `[telemetry]` tracing every request (sampling_ratio 1.0) over OTLP http/protobuf to a sink in the bench (batches every 5 s, the default). Each runs one warm-up and then {Lifecycles} pod lifecycles (run, create, start, exec, stop, remove: the lifecycle section's workload), the three taking turns lifecycle by lifecycle. RSS is the daemon's `VmRSS` after the run, peak its `VmHWM`.");
        sb.AppendLine();
        if (_results.Count == 0)
        {
            sb.AppendLine("Not measured (the run did not finish).");
            return sb.ToString();
        }
        var off = _results[0];
        double P50(Result r, string op) => Stats.Percentile(r.Samples.Of(op), 50);
        double P90(Result r, string op) => Stats.Percentile(r.Samples.Of(op), 90);
        string Ratio(double v, double baseline) => baseline > 0 ? (v / baseline).ToString("0.00", CultureInfo.InvariantCulture) : "–";
        sb.AppendLine("| config | daemon RSS | vs off | peak RSS | CreateContainer p50 | vs off | CreateContainer p90 | RunPodSandbox p50 | StartContainer p50 | errors |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in _results)
        {
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Config} | {r.RssKb / 1024.0:0.0} MiB | {Ratio(r.RssKb, off.RssKb)} | {r.HwmKb / 1024.0:0.0} MiB | {P50(r, "CreateContainer"):0.0} ms | {Ratio(P50(r, "CreateContainer"), P50(off, "CreateContainer"))} | {P90(r, "CreateContainer"):0.0} ms | {P50(r, "RunPodSandbox"):0.0} ms | {P50(r, "StartContainer"):0.0} ms | {r.Samples.Errors.Count} |"));
        }
        sb.AppendLine();
        sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"The metrics daemon was scraped {_scrapes} times; the tracing daemon sent {_exports} OTLP export requests ({_exportBytes / 1024.0:0.0} KiB) to the sink."));
        foreach (var r in _results)
            foreach (var e in r.Samples.Errors.Take(3)) sb.AppendLine($"- {r.Config}: {e}");
        return sb.ToString();
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>An OTLP/HTTP trace sink: accepts POST /v1/traces, counts requests and bytes,
    /// answers 200 with an empty ExportTraceServiceResponse.</summary>
    private sealed class OtlpSink : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;
        private int _requests;
        private long _bytes;

        public OtlpSink(int port)
        {
            Endpoint = $"http://127.0.0.1:{port}";
            _listener.Prefixes.Add(Endpoint + "/");
            _listener.Start();
            _loop = Task.Run(LoopAsync);
        }

        public string Endpoint { get; }
        public int Requests => Volatile.Read(ref _requests);
        public long Bytes => Interlocked.Read(ref _bytes);

        private async Task LoopAsync()
        {
            while (true)
            {
                HttpListenerContext ctx;
                try { ctx = await _listener.GetContextAsync(); }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
                using var ms = new MemoryStream();
                await ctx.Request.InputStream.CopyToAsync(ms);
                if (ctx.Request.HttpMethod == "POST" && ctx.Request.Url?.AbsolutePath == "/v1/traces")
                {
                    Interlocked.Increment(ref _requests);
                    Interlocked.Add(ref _bytes, ms.Length);
                    ctx.Response.StatusCode = 200;
                    ctx.Response.ContentType = "application/x-protobuf";
                }
                else ctx.Response.StatusCode = 404;
                ctx.Response.Close();
            }
        }

        public void Dispose()
        {
            _listener.Close();
            try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        }
    }
}
