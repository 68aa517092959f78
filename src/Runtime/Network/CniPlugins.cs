using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Telemetry;

namespace CriRuntime.Network;

/// <summary>The runtime's side of one CNI invocation: what goes into the environment.</summary>
public sealed record CniInvocation(string Command, string ContainerId, string NetnsPath, string IfName, string Args);

/// <summary>Executes CNI plugins as the CNI specification says: the plugin binary found in the
/// plugin directories, parameters in CNI_* environment variables, the network configuration on
/// stdin, the result (or an error object) on stdout.</summary>
public sealed class CniPlugins(CriRuntimeConfig config, Metrics.RuntimeMetrics? metrics = null)
{
    private readonly IReadOnlyList<string> _binDirs = config.Cni.BinDirs;
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    public string Find(string type) =>
        _binDirs.Select(d => Path.Combine(d, type)).FirstOrDefault(File.Exists)
        ?? throw Fail.FailedPrecondition($"CNI plugin '{type}' not found in {string.Join(", ", _binDirs)}");

    /// <summary>Runs one plugin; returns its stdout (the result for ADD, empty for DEL/CHECK).
    /// Its duration goes to the CNI histogram by command, plugin and outcome, and it is a span
    /// ("cni ADD bridge") when tracing is on.</summary>
    public async Task<string> ExecAsync(string type, CniInvocation inv, byte[] stdin, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var ok = false;
        using var span = Telemetry.Tracing.Start($"cni {inv.Command} {type}");
        span?.SetTag("cni.command", inv.Command);
        span?.SetTag("cni.plugin", type);
        span?.SetTag("cni.ifname", inv.IfName);
        try
        {
            var output = await RunAsync(type, inv, stdin, ct);
            ok = true;
            return output;
        }
        catch (Exception e) when (span.Failed(e))
        {
            throw; // not reached: Failed only marks the span
        }
        finally
        {
            metrics?.Cni(inv.Command, type, ok, Stopwatch.GetElapsedTime(started));
        }
    }

    private async Task<string> RunAsync(string type, CniInvocation inv, byte[] stdin, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(Find(type))
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment.Clear();
        psi.Environment["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin";
        psi.Environment["CNI_COMMAND"] = inv.Command;
        // STATUS and GC concern no container: they get only CNI_COMMAND and CNI_PATH.
        if (inv.ContainerId.Length > 0) psi.Environment["CNI_CONTAINERID"] = inv.ContainerId;
        if (inv.NetnsPath.Length > 0) psi.Environment["CNI_NETNS"] = inv.NetnsPath;
        if (inv.IfName.Length > 0) psi.Environment["CNI_IFNAME"] = inv.IfName;
        if (inv.Args.Length > 0) psi.Environment["CNI_ARGS"] = inv.Args;
        psi.Environment["CNI_PATH"] = string.Join(':', _binDirs);
        using var p = Process.Start(psi) ?? throw Fail.Unavailable($"cannot start CNI plugin {type}");
        // A helper: at a lower priority than the daemon (HelperPriority), set before it reads its
        // input, so before it starts anything of its own (an IPAM plugin inherits it).
        _ = Interop.Libc.Setpriority(Interop.Libc.PRIO_PROCESS, (uint)p.Id, Shim.Client.HelperPriority.For(Shim.Client.HelperPriority.Current()));
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.StandardInput.BaseStream.WriteAsync(stdin, ct);
        p.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Timeout);
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            if (ct.IsCancellationRequested) throw;
            throw Fail.DeadlineExceeded($"CNI plugin {type} {inv.Command} did not finish within {Timeout.TotalSeconds:F0}s");
        }
        var output = await stdout;
        if (p.ExitCode != 0)
            throw Fail.Unavailable($"CNI plugin {type} {inv.Command} failed: {DescribeError(output, await stderr, p.ExitCode)}");
        return output;
    }

    /// <summary>A CNI error object {"code", "msg", "details"} as one line.</summary>
    internal static string DescribeError(string stdout, string stderr, int exitCode)
    {
        try
        {
            if (JsonNode.Parse(stdout) is JsonObject o)
            {
                var sb = new StringBuilder();
                sb.Append("code ").Append(o["code"]?.ToString() ?? "?").Append(": ").Append(o["msg"]?.ToString() ?? "");
                if (o["details"]?.ToString() is { Length: > 0 } d) sb.Append(" (").Append(d).Append(')');
                return sb.ToString();
            }
        }
        catch (JsonException) { }
        var text = (stdout + " " + stderr).Trim();
        return text.Length > 0 ? $"exit {exitCode}: {text}" : $"exit {exitCode}";
    }
}
