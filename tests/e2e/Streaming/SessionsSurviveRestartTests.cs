using System.Net.WebSockets;
using System.Text;
using System.Text.RegularExpressions;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Streaming;

/// <summary>Exec and attach sessions outlive the daemon: they are served by the stream server
/// (`criruntime-stream-server`), which a kill -9 of the daemon does not touch and the restarted
/// daemon adopts. Each test exchanges a line before the kill, while no daemon runs, and after the
/// restart, then ends the session and reads the exit code from the error stream.</summary>
public partial class InteractiveTests
{
    /// <summary>Pids of the stream servers serving <paramref name="d"/>'s state directory.</summary>
    private static List<int> StreamServers(DaemonProcess d)
    {
        var pids = new List<int>();
        foreach (var procDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(procDir), out var pid)) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(procDir, "cmdline")).Split('\0');
                if (cmdline.Length > 3 && Path.GetFileName(cmdline[0]) == "criruntime-stream-server" && cmdline.Contains(d.State)) pids.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return pids;
    }

    [Fact]
    public async Task ExecSession_OverSpdy_SurvivesADaemonKill9AndRestart()
    {
        await using var s = await StartAsync("survive-spdy");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));

        var url = (await c.Runtime.ExecAsync(new ExecRequest
        {
            ContainerId = id, Cmd = { "sh", "-c", "while read l; do echo got-$l; done; exit 3" }, Stdin = true, Stdout = true, Stderr = true,
        })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: true, tty: false, cts.Token);
        var seen = new StringBuilder();
        await cmd.Stdin!.WriteAsync("one\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-one\n"), cts.Token);
        var server = Assert.Single(StreamServers(s.D));

        await s.D.KillAsync();
        await cmd.Stdin.WriteAsync("two\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-two\n"), cts.Token);

        await s.D.StartAsync();
        Assert.Contains($"adopted stream server {server}", s.D.Output);
        await cmd.Stdin.WriteAsync("three\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-three\n"), cts.Token);

        // End of stdin ends the loop; the exit code comes on the error stream as before.
        await cmd.Stdin.CloseWriteAsync(cts.Token);
        var status = await cmd.StatusAsync(cts.Token);
        Assert.Equal("NonZeroExitCode", status.Reason);
        Assert.Equal(3, status.ExitCode);
        Assert.Equal("got-one\ngot-two\ngot-three\n", seen.ToString());

        // The restarted daemon hands out new URLs on the same server.
        var again = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "echo", "after-restart" }, Stdout = true })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        await ws.ConnectAsync(new Uri(again.Replace("http://", "ws://")), cts.Token);
        var channels = await ReadAllChannelsAsync(ws, cts.Token);
        Assert.Equal("after-restart\n", channels.GetValueOrDefault((byte)1));
        Assert.Equal(0, Status.Parse(channels[3]).ExitCode);
        Assert.Equal([server], StreamServers(s.D));
    }

    [Fact]
    public async Task TtyExecSession_OverWebSocket_SurvivesADaemonKill9AndRestart()
    {
        await using var s = await StartAsync("survive-ws");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));

        var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "sh" }, Stdin = true, Stdout = true, Tty = true })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://")), cts.Token);
        var output = new StringBuilder();
        // The quotes keep the typed line (echoed by the terminal) apart from the command's output.
        await SendStdinAsync(ws, "echo before-''kill\n", cts.Token);
        await ReadChannelUntilAsync(ws, 1, output, new Regex("before-kill"), cts.Token);

        await s.D.KillAsync();
        await SendStdinAsync(ws, "echo while-''down\n", cts.Token);
        await ReadChannelUntilAsync(ws, 1, output, new Regex("while-down"), cts.Token);

        await s.D.StartAsync();
        await SendStdinAsync(ws, "echo after-''restart; exit 9\n", cts.Token);
        await ReadChannelUntilAsync(ws, 1, output, new Regex("after-restart"), cts.Token);
        var rest = await ReadAllChannelsAsync(ws, cts.Token);
        Assert.Equal(9, Status.Parse(rest[3]).ExitCode);
    }

    [Fact]
    public async Task AttachSession_OverSpdy_SurvivesADaemonKill9AndRestart()
    {
        await using var s = await StartAsync("survive-attach", logDir: "logs");
        var c = s.C;
        var id = await StartStdinOnceAsync(s, "while read l; do echo got-$l; done; exit 5");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));

        var url = (await c.Runtime.AttachAsync(new AttachRequest { ContainerId = id, Stdin = true, Stdout = true, Stderr = true })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: true, tty: false, cts.Token);
        var seen = new StringBuilder();
        await cmd.Stdin!.WriteAsync("one\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-one\n"), cts.Token);

        await s.D.KillAsync();
        await cmd.Stdin.WriteAsync("two\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-two\n"), cts.Token);

        await s.D.StartAsync();
        await cmd.Stdin.WriteAsync("three\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-three\n"), cts.Token);

        // stdin_once: closing stdin ends the container's input; it exits 5.
        await cmd.Stdin.CloseWriteAsync(cts.Token);
        var status = await Logged(s, cmd.StatusAsync(cts.Token));
        Assert.True(status.ExitCode == 5, $"status {status}{s.D.HelperLogs()}");
        Assert.Equal(5, (await c.WaitExitedAsync(id)).ExitCode);
    }

    [Fact]
    public async Task StreamServer_StartsWithTheFirstExec_AndExitsWithTheDaemon()
    {
        await using var s = await StartAsync("lifecycle");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        // An idle node pays nothing: no stream server until a streaming request.
        Assert.Empty(StreamServers(s.D));
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "true" }, Stdout = true });
        var server = Assert.Single(StreamServers(s.D));
        Assert.Contains($"started stream server {server}", s.D.Output);

        // A clean daemon stop with no session open: the server exits, and the daemon waits for it.
        await s.D.StopAsync();
        Assert.Empty(StreamServers(s.D));
        await s.D.StartAsync();
    }

    /// <summary>The stream server idles small (issue 18: at most 10 MB private): after a SPDY and a
    /// WebSocket exec session it comes down to no more than that of its own, while a daemon stays
    /// connected.</summary>
    [Fact]
    public async Task StreamServer_AfterSessionsOverSpdyAndWebSocket_IdlesWithin10MbPrivate()
    {
        const long MaxPrivateKb = 10 * 1024;
        await using var s = await StartAsync("footprint");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));

        var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "cat" }, Stdin = true, Stdout = true, Stderr = true })).Url;
        await using (var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: true, tty: false, cts.Token))
        {
            await cmd.Stdin!.WriteAsync("over-spdy\n"u8.ToArray(), cts.Token);
            await ReadUntilAsync(cmd.Stdout!, new StringBuilder(), new Regex("over-spdy\n"), cts.Token);
            await cmd.Stdin.CloseWriteAsync(cts.Token);
            Assert.Equal(0, (await cmd.StatusAsync(cts.Token)).ExitCode);
        }
        var wsUrl = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "echo", "over-websocket" }, Stdout = true })).Url;
        using (var ws = new ClientWebSocket())
        {
            ws.Options.AddSubProtocol("v5.channel.k8s.io");
            await ws.ConnectAsync(new Uri(wsUrl.Replace("http://", "ws://")), cts.Token);
            var channels = await ReadAllChannelsAsync(ws, cts.Token);
            Assert.Equal("over-websocket\n", channels.GetValueOrDefault((byte)1));
        }

        // It gives memory back a second after the last session (IdleTrim); allow for a loaded machine.
        var server = Assert.Single(StreamServers(s.D));
        var privateKb = ProcMemory.PrivateKb(server);
        for (var deadline = DateTime.UtcNow.AddSeconds(10); privateKb > MaxPrivateKb && DateTime.UtcNow < deadline; privateKb = ProcMemory.PrivateKb(server))
            await Task.Delay(100, cts.Token);
        Assert.True(privateKb <= MaxPrivateKb, $"idle stream server private memory {privateKb} kB > {MaxPrivateKb} kB\n{ProcMemory.Breakdown(server)}");
    }

    private static Task SendStdinAsync(ClientWebSocket ws, string text, CancellationToken ct) =>
        ws.SendAsync(new byte[] { 0 }.Concat(Encoding.UTF8.GetBytes(text)).ToArray(), WebSocketMessageType.Binary, true, ct);

    /// <summary>Reads messages until channel <paramref name="channel"/>'s text matches.</summary>
    private static async Task ReadChannelUntilAsync(ClientWebSocket ws, byte channel, StringBuilder seen, Regex pattern, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        while (!pattern.IsMatch(seen.ToString()))
        {
            var frame = new MemoryStream();
            WebSocketReceiveResult r;
            do
            {
                r = await ws.ReceiveAsync(buffer, ct);
                frame.Write(buffer, 0, r.Count);
            }
            while (!r.EndOfMessage);
            if (r.MessageType == WebSocketMessageType.Close) throw new EndOfStreamException($"closed before /{pattern}/; saw: {seen}");
            var bytes = frame.ToArray();
            if (bytes.Length > 0 && bytes[0] == channel) seen.Append(Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
        }
    }
}
