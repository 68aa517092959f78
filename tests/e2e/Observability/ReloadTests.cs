using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Observability;

/// <summary>SIGHUP: what may change at run time applies, what may not is named and kept, an
/// invalid config is refused and the one in force stays; `criruntime config` shows it.
/// (A new mirror used by the next pull during an exec session: Streaming/SessionsSurviveReloadTests.)</summary>
public class ReloadTests
{
    [Fact]
    public async Task Reload_AppliesTokenTtl_KeepsTheStreamingPort_AndConfigShowsWhatIsInForce()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        File.WriteAllText(Path.Combine(d.DropInDir, "60-streaming.toml"), "[streaming]\ntoken_ttl = \"5m\"\nport = 10777\n");
        var args = new[] { "--config", d.ConfigFile, "--socket", d.Socket, "--state", d.State };

        var (code, _, stderr) = await DaemonProcess.RunCliAsync(["reload", .. args]);
        Assert.True(code == 0, stderr);
        await WaitForOutputAsync(d, "config reloaded: streaming.token_ttl");
        Assert.Contains("config reload: streaming.port cannot change while the daemon runs", d.Output);

        var (_, shown, _) = await DaemonProcess.RunCliAsync(["config", .. args]);
        Assert.Contains($"# In force in the daemon (pid {d.Pid}) serving {d.Socket}.", shown);
        Assert.Contains("token_ttl = \"5m\"", shown);
        Assert.Contains("port = 0", shown);
        // Status's verbose info shows the same.
        using var c = d.Client();
        var info = (await c.Runtime.StatusAsync(new StatusRequest { Verbose = true })).Info["config"];
        Assert.Contains("\"tokenTtl\":\"00:05:00\"", info.Replace(" ", ""));
    }

    [Fact]
    public async Task Reload_OfAnInvalidConfig_IsLoggedNamingFileAndKey_AndTheOldConfigStays()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        var dropIn = Path.Combine(d.DropInDir, "60-bad.toml");
        File.WriteAllText(dropIn, "[streaming]\ntoken_ttl = \"5m\"\n[registry]\ninsecure = 5\n");
        // `criruntime reload` reads the files first and refuses to signal (below); kill -HUP does not.
        d.Signal(1);
        await WaitForOutputAsync(d, "config reload refused");
        Assert.Contains($"the config in force stays: {dropIn}: key 'registry.insecure': must be an array of strings", d.Output);

        using var c = d.Client();
        await c.Runtime.VersionAsync(new VersionRequest());
        var (_, shown, _) = await DaemonProcess.RunCliAsync("config", "--config", d.ConfigFile, "--socket", d.Socket, "--state", d.State);
        Assert.Contains("token_ttl = \"1m\"", shown);
        Assert.Contains($"# In force in the daemon (pid {d.Pid})", shown);

        var (code, _, stderr) = await DaemonProcess.RunCliAsync("reload", "--config", d.ConfigFile, "--socket", d.Socket, "--state", d.State);
        Assert.Equal(2, code);
        Assert.Contains($"{dropIn}: key 'registry.insecure'", stderr);
        Assert.Single(d.Output.Split('\n'), l => l.Contains("config reload refused", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Reload_WithNoDaemonOnTheSocket_FailsNamingIt()
    {
        var socket = Path.Combine(Path.GetTempPath(), $"criruntime-none-{Guid.NewGuid():N}.sock");
        var (code, _, stderr) = await DaemonProcess.RunCliAsync("reload", "--socket", socket);
        Assert.Equal(2, code);
        Assert.Contains($"reload: no daemon serves {socket}", stderr);
    }

    /// <summary>Until the daemon logged <paramref name="text"/> (it logs the reload's outcome once
    /// the signal was handled), polled with a deadline.</summary>
    internal static async Task WaitForOutputAsync(DaemonProcess d, string text)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        while (!d.Output.Contains(text, StringComparison.Ordinal))
        {
            try { await tick.WaitForNextTickAsync(cts.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"daemon did not log '{text}' within 30 s:\n{d.Output}"); }
        }
    }
}
