using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Bench;

/// <summary>Streaming exec (issue 18: "the idle stream server no more than 10 MB of private
/// memory"): on each runtime of the run, one pod with a sleeping busybox container, then N exec
/// sessions one after another as kubectl exec makes them (the CRI Exec call for a URL, then a
/// WebSocket v4.channel.k8s.io session running `echo`, read to its close). Timed per session; then,
/// 3 s after the last one, the memory of what serves the sessions: our separate stream server
/// process, or containerd's daemon itself (its streaming server is in-process). N: $STREAM_SESSIONS,
/// default 20.</summary>
public sealed class StreamingSection : IBenchSection
{
    public string Name => "streaming";
    public string Title => "Streaming exec and the stream server (issue 18)";
    public bool UsesRuntimes => true;

    public const long TargetPrivateKb = 10 * 1024;

    private sealed record Server(string What, long PrivateKb, long RssKb, int Threads);
    private sealed record Result(string Runtime, Samples Samples, Server? Server, long DaemonRssBeforeKb, long DaemonRssAfterKb);

    private readonly List<Result> _results = [];

    private static int Count() =>
        int.TryParse(Environment.GetEnvironmentVariable("STREAM_SESSIONS"), out var n) && n > 0 ? n : 20;

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        foreach (var rt in ctx.Runtimes)
        {
            Console.WriteLine($"[streaming] {rt.Name}: {Count()} exec sessions over WebSocket ...");
            var r = await MeasureAsync(rt, new Workloads(rt, ctx.Env), Count(), ct);
            var p50 = Stats.Percentile(r.Samples.Of("exec session"), 50);
            Console.WriteLine($"  p50 {p50:F1} ms, server {r.Server?.What} private {r.Server?.PrivateKb} KiB, errors {r.Samples.Errors.Count}");
            foreach (var e in r.Samples.Errors.Take(5)) Console.WriteLine("    " + e);
            _results.Add(r);
        }
    }

    private static async Task<Result> MeasureAsync(RuntimeUnderTest rt, Workloads w, int n, CancellationToken ct)
    {
        var s = new Samples();
        using var c = w.Client();
        var pod = w.Pod("streambench");
        string? podId = null;
        var rssBefore = RssKb(rt.DaemonPid);
        long rssAfter = 0;
        Server? server = null;
        try
        {
            podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, cancellationToken: ct)).PodSandboxId;
            var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest
            {
                PodSandboxId = podId, Config = w.Container("app", "sleep", "3600"), SandboxConfig = pod,
            }, cancellationToken: ct)).ContainerId;
            await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, cancellationToken: ct);
            await SessionAsync(c, id, "warmup", new Samples(), ct); // starts our stream server; not counted
            for (var i = 0; i < n; i++) await SessionAsync(c, id, $"session-{i}", s, ct);
            // Quiet: our server gives memory back a second after its last session.
            await Task.Delay(TimeSpan.FromSeconds(3), ct);
            server = rt is OurRuntime ? StreamServer(rt) : Describe("in the daemon", rt.DaemonPid);
        }
        catch (RpcException e)
        {
            s.Error($"{e.Status.StatusCode} {e.Status.Detail}");
        }
        finally
        {
            rssAfter = RssKb(rt.DaemonPid);
            if (podId is not null)
            {
                try
                {
                    await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, cancellationToken: ct);
                    await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, cancellationToken: ct);
                }
                catch (RpcException e) { s.Error($"teardown: {e.Status.Detail}"); }
            }
        }
        return new Result(rt.Name, s, server, rssBefore, rssAfter);
    }

    /// <summary>Exec for a URL, then the session over WebSocket until the server closes it.</summary>
    private static async Task SessionAsync(CriClient c, string id, string text, Samples s, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        try
        {
            var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "echo", text }, Stdout = true }, cancellationToken: ct)).Url;
            using var ws = new ClientWebSocket();
            ws.Options.AddSubProtocol("v4.channel.k8s.io");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            await ws.ConnectAsync(new Uri("ws" + url["http".Length..]), timeout.Token);
            var stdout = new StringBuilder();
            var status = new StringBuilder();
            var buffer = new byte[16 * 1024];
            while (true)
            {
                var m = new MemoryStream();
                WebSocketReceiveResult r;
                do
                {
                    r = await ws.ReceiveAsync(buffer, timeout.Token);
                    m.Write(buffer, 0, r.Count);
                }
                while (!r.EndOfMessage);
                if (r.MessageType == WebSocketMessageType.Close) break;
                var bytes = m.ToArray();
                if (bytes.Length == 0) continue;
                if (bytes[0] == 1) stdout.Append(Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
                if (bytes[0] == 3) status.Append(Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
            }
            if (ws.State == WebSocketState.CloseReceived)
                await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            s.Add("exec session", sw.Elapsed.TotalMilliseconds);
            if (stdout.ToString() != text + "\n") s.Error($"{text}: stdout \"{stdout}\"");
            if (!status.ToString().Contains("\"Success\"", StringComparison.Ordinal)) s.Error($"{text}: status {status}");
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or RpcException)
        {
            s.Error($"{text}: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Our stream server for <paramref name="rt"/>'s state directory.</summary>
    private static Server? StreamServer(RuntimeUnderTest rt)
    {
        var pid = Procs.All().FirstOrDefault(p => p.Cmdline.Contains("criruntime-stream-server", StringComparison.Ordinal)
            && p.Cmdline.Contains(rt.State, StringComparison.Ordinal))?.Pid;
        return pid is int p ? Describe("criruntime-stream-server (its own process)", p) : null;
    }

    private static Server Describe(string what, int pid)
    {
        var rollup = File.ReadAllText($"/proc/{pid}/smaps_rollup");
        long Kb(string key) => Stats.MeminfoKb(rollup, key);
        var threads = Directory.GetDirectories($"/proc/{pid}/task").Length;
        return new Server(what, Kb("Private_Clean") + Kb("Private_Dirty"), Kb("Rss"), threads);
    }

    private static long RssKb(int pid)
    {
        try { return Stats.ParseSmapsRollup(File.ReadAllText($"/proc/{pid}/smaps_rollup")).RssKb; }
        catch (IOException) { return 0; }
    }

    public string Markdown(BenchContext ctx)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"One pod with a sleeping busybox container per runtime; {Count()} exec sessions one after another, each the CRI `Exec` call for a URL and then a WebSocket `v4.channel.k8s.io` session running `echo` read to its close (what `kubectl exec` does through the kubelet). Then, 3 s after the last session, the memory of what serves the sessions, from `/proc/PID/smaps_rollup` (private = Private_Clean + Private_Dirty). Ours is a process of its own, `criruntime-stream-server`, so that sessions outlive a daemon restart (docs/streaming.md); containerd serves them in its daemon.");
        sb.AppendLine();
        sb.AppendLine("| runtime | exec session p50 | p95 | errors | served by | private | RSS | threads | daemon RSS before → after |");
        sb.AppendLine("|---|---:|---:|---:|---|---:|---:|---:|---:|");
        foreach (var r in _results)
        {
            var ms = r.Samples.Of("exec session");
            var srv = r.Server;
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Runtime} | {Stats.Percentile(ms, 50):F1} ms | {Stats.Percentile(ms, 95):F1} ms | {r.Samples.Errors.Count} | {srv?.What ?? "?"} | {Mib(srv?.PrivateKb)} | {Mib(srv?.RssKb)} | {srv?.Threads} | {Mib(r.DaemonRssBeforeKb)} → {Mib(r.DaemonRssAfterKb)} |");
        }
        sb.AppendLine();
        var ours = _results.FirstOrDefault(r => r.Runtime == "criruntime")?.Server;
        if (ours is not null)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"Target: the idle stream server at most 10 MB private: {Mib(ours.PrivateKb)} — **{(ours.PrivateKb <= TargetPrivateKb ? "met" : "missed")}**.");
        return sb.ToString();
    }

    private static string Mib(long? kb) => kb is long k ? (k / 1024.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB" : "?";
}
