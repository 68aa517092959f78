using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace CriRuntime.Tests.E2E.Observability;

/// <summary>Debian's `prometheus` as a child process: loopback only, its own storage in a temp
/// directory, one scrape job pointed at the daemon's metrics listener, scraped every second.</summary>
public sealed class PrometheusServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly Lock _outputLock = new();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    public string Dir { get; }
    public int Port { get; }
    public string Output { get { lock (_outputLock) return _output.ToString(); } }

    public PrometheusServer(string target)
    {
        Dir = Directory.CreateTempSubdirectory("criruntime-prometheus-").FullName;
        Port = FreePort();
        var config = Path.Combine(Dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: criruntime
                static_configs:
                  - targets: ["{target}"]
            """);
        var psi = new ProcessStartInfo("prometheus")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[]
                 {
                     $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(Dir, "data")}",
                     $"--web.listen-address=127.0.0.1:{Port}", "--log.level=warn",
                 })
            psi.ArgumentList.Add(a);
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data is { } l) lock (_outputLock) _output.AppendLine(l); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is { } l) lock (_outputLock) _output.AppendLine(l); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>A port nothing listens on now (bound and released).</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>/api/v1/query: every series of an instant vector as (labels, value).</summary>
    public async Task<IReadOnlyList<(Dictionary<string, string> Labels, double Value)>> QueryAsync(string promql)
    {
        var url = $"http://127.0.0.1:{Port}/api/v1/query?query={Uri.EscapeDataString(promql)}";
        using var doc = JsonDocument.Parse(await _http.GetStringAsync(url));
        var data = doc.RootElement.GetProperty("data");
        return [.. data.GetProperty("result").EnumerateArray().Select(r => (
            r.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? ""),
            double.Parse(r.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture)))];
    }

    /// <summary>Queries until <paramref name="done"/> holds for the result or the deadline passes
    /// (Prometheus scrapes every second: the answer changes only then).</summary>
    public async Task<IReadOnlyList<(Dictionary<string, string> Labels, double Value)>> QueryUntilAsync(
        string promql, Func<IReadOnlyList<(Dictionary<string, string> Labels, double Value)>, bool> done, TimeSpan deadline)
    {
        using var cts = new CancellationTokenSource(deadline);
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(250));
        IReadOnlyList<(Dictionary<string, string>, double)> last = [];
        string error = "";
        do
        {
            if (_process.HasExited) throw new InvalidOperationException($"prometheus exited ({_process.ExitCode}):\n{Output}");
            try
            {
                last = await QueryAsync(promql);
                if (done(last)) return last;
            }
            catch (HttpRequestException e) { error = e.Message; } // not listening yet
        }
        while (await NextTick(tick, cts.Token));
        throw new TimeoutException($"prometheus: '{promql}' not as expected within {deadline.TotalSeconds} s; last result " +
            $"[{string.Join("; ", last.Select(r => $"{string.Join(",", r.Item1.Select(kv => $"{kv.Key}={kv.Value}"))} = {r.Item2}"))}] {error}\n{Output}");
    }

    private static async Task<bool> NextTick(PeriodicTimer tick, CancellationToken ct)
    {
        try { return await tick.WaitForNextTickAsync(ct); }
        catch (OperationCanceledException) { return false; }
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(TimeSpan.FromSeconds(30));
            }
        }
        finally
        {
            _process.Dispose();
            _http.Dispose();
            try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
        }
    }
}
