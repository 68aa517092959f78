using System.Net.WebSockets;
using System.Text;
using System.Text.RegularExpressions;
using CriRuntime.Cri.V1;
using System.Text.Json;
using CriRuntime.Streaming.Spdy;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Streaming;

/// <summary>kubectl exec -i/-t and kubectl attach against a real daemon and real containers,
/// with our own SPDY and WebSocket clients.</summary>
[Collection(RegistryCollection.Name)]
public partial class InteractiveTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>The metav1.Status on the error stream, read as client-go reads it: the exit code
    /// of a NonZeroExitCode failure is the message of its ExitCode cause.</summary>
    private sealed record Status(string Kind, string? Reason, int? ExitCode)
    {
        public static Status Parse(string json)
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            var kind = root.GetProperty("status").GetString()!;
            var reason = root.TryGetProperty("reason", out var r) ? r.GetString() : null;
            int? code = kind == "Success" ? 0 : null;
            if (reason == "NonZeroExitCode")
                foreach (var cause in root.GetProperty("details").GetProperty("causes").EnumerateArray())
                    if (cause.GetProperty("reason").GetString() == "ExitCode") code = int.Parse(cause.GetProperty("message").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
            return new Status(kind, reason, code);
        }
    }

    /// <summary>A client-go-like SPDY remote-command session: one stream per channel.</summary>
    private sealed class SpdyCommand : IAsyncDisposable
    {
        public required SpdyClientSession Session { get; init; }
        public required SpdyStream Error { get; init; }
        public SpdyStream? Stdin { get; init; }
        public SpdyStream? Stdout { get; init; }
        public SpdyStream? Stderr { get; init; }
        public SpdyStream? Resize { get; init; }

        public static async Task<SpdyCommand> OpenAsync(string url, bool stdin, bool stdout, bool stderr, bool tty, CancellationToken ct)
        {
            var session = await SpdyClientSession.ConnectAsync(url, ["v4.channel.k8s.io"], ct);
            Assert.Equal("v4.channel.k8s.io", session.Protocol);
            async Task<SpdyStream> Open(string type) => await session.Connection.OpenStreamAsync(new SpdyHeaders().Add("streamType", type), ct);
            var error = await Open("error");
            await error.CloseWriteAsync(ct);
            return new SpdyCommand
            {
                Session = session,
                Error = error,
                Stdin = stdin ? await Open("stdin") : null,
                Stdout = stdout ? await Open("stdout") : null,
                Stderr = stderr ? await Open("stderr") : null,
                Resize = tty ? await Open("resize") : null,
            };
        }

        public async Task SendResizeAsync(ushort width, ushort height, CancellationToken ct) =>
            await Resize!.WriteAsync(Encoding.UTF8.GetBytes($"{{\"Width\":{width},\"Height\":{height}}}"), ct);

        /// <summary>The Status JSON the server wrote on the error stream when the command ended.</summary>
        public async Task<Status> StatusAsync(CancellationToken ct)
        {
            var ms = new MemoryStream();
            await Error.CopyToAsync(ms, ct);
            return Status.Parse(Encoding.UTF8.GetString(ms.ToArray()));
        }

        public ValueTask DisposeAsync() => Session.DisposeAsync();
    }

    /// <summary>Reads <paramref name="stream"/> into <paramref name="seen"/> until the text matches.</summary>
    private static async Task<Match> ReadUntilAsync(Stream stream, StringBuilder seen, Regex pattern, CancellationToken ct)
    {
        var buffer = new byte[4096];
        while (true)
        {
            var m = pattern.Match(seen.ToString());
            if (m.Success) return m;
            int n;
            try { n = await stream.ReadAsync(buffer, ct); }
            catch (OperationCanceledException e) { throw new TimeoutException($"no /{pattern}/ in time; saw: {seen}", e); }
            if (n == 0) throw new EndOfStreamException($"output ended before /{pattern}/; saw: {seen}");
            seen.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
    }

    /// <summary>A daemon with one pod. Disposing removes the pod first, so a failing test reports
    /// its own failure, not the leak check's complaint about what it left behind.</summary>
    private sealed class PodSession : IAsyncDisposable
    {
        public required DaemonProcess D { get; init; }
        public required TestNetwork Net { get; init; }
        public required CriClient C { get; init; }
        public required string PodId { get; init; }
        public required PodSandboxConfig Pod { get; init; }

        public async ValueTask DisposeAsync()
        {
            try { await C.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = PodId }); }
            finally
            {
                C.Dispose();
                Net.Dispose();
                D.Dispose();
            }
        }
    }

    /// <summary>Awaits the end of a session; if it fails (a timeout), with the shims' and the
    /// stream server's logs in the message, since the pod and its logs are removed after the test.</summary>
    private static async Task<T> Logged<T>(PodSession s, Task<T> session)
    {
        try { return await session; }
        catch (Exception e) when (e is OperationCanceledException or IOException or WebSocketException)
        {
            throw new InvalidOperationException($"the session did not end: {e.Message}\ndaemon output (tail): {string.Join('\n', s.D.Output.Split('\n').TakeLast(40))}{s.D.HelperLogs()}", e);
        }
    }

    /// <summary>Starts a busybox container running <paramref name="script"/> with stdin and
    /// stdin_once, as kubectl run -i creates one; returns its id.</summary>
    private async Task<string> StartStdinOnceAsync(PodSession s, string script)
    {
        var config = Container("main", _registry.Image("busybox"), "sh", "-c", script);
        config.Stdin = true;
        config.StdinOnce = true;
        return await s.C.StartNewAsync(s.PodId, s.Pod, config);
    }

    private async Task<PodSession> StartAsync(string name, string? logDir = null)
    {
        var d = new DaemonProcess();
        var net = new TestNetwork(d);
        await d.StartAsync();
        var c = d.Client();
        await c.PullAsync(_registry.Image("busybox"));
        var pod = PodConfig(name, logDir is null ? null : Path.Combine(d.Dir, logDir));
        return new PodSession { D = d, Net = net, C = c, PodId = await c.RunPodAsync(pod), Pod = pod };
    }

    /// <summary>busybox `stty size`: "ROWS COLS", or an error while the size is still 0x0 (no
    /// resize has reached the terminal yet).</summary>
    [GeneratedRegex(@"(?:(\d+) (\d+)|stty: standard input[^\n]*)\r?\n")]
    private static partial Regex SttySize();

    [Fact]
    public async Task ExecTty_OverSpdy_SttySizeSeesTheResize_AndTheExitCodeIsReported()
    {
        await using var s = await StartAsync("tty");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "sh" }, Stdin = true, Stdout = true, Tty = true })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: false, tty: true, cts.Token);
        var seen = new StringBuilder();
        await cmd.SendResizeAsync(123, 45, cts.Token);
        // The resize travels beside stdin (its own stream, then the shim's control socket), so a
        // command typed right after it may still see the old size: ask until the new one shows,
        // each time waiting for the answer to the question just asked.
        var sizes = new List<string>();
        for (var attempt = 0; attempt < 20 && !sizes.Contains("45 123"); attempt++)
        {
            await cmd.Stdin!.WriteAsync("stty size\n"u8.ToArray(), cts.Token);
            var m = await ReadUntilAsync(cmd.Stdout!, seen, SttySize(), cts.Token);
            sizes.Add($"{m.Groups[1].Value} {m.Groups[2].Value}");
            seen.Remove(0, m.Index + m.Length);
        }
        Assert.Contains("45 123", sizes);

        // It is a terminal for the process: a tty device of the container's own devpts.
        await cmd.Stdin!.WriteAsync("tty; exit 7\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex(@"/dev/pts/\d+"), cts.Token);
        var status = await cmd.StatusAsync(cts.Token);
        Assert.Equal("NonZeroExitCode", status.Reason);
        Assert.Equal(7, status.ExitCode);
    }

    [Fact]
    public async Task ExecStdin_OverSpdy_CatEchoesLive_AndEndsWithStdinClose()
    {
        await using var s = await StartAsync("stdin");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "cat" }, Stdin = true, Stdout = true, Stderr = true })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: true, tty: false, cts.Token);
        var seen = new StringBuilder();
        // Live: the first line comes back while stdin is still open.
        await cmd.Stdin!.WriteAsync("first line\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("first line\n"), cts.Token);
        await cmd.Stdin.WriteAsync("second\n"u8.ToArray(), cts.Token);
        await cmd.Stdin.CloseWriteAsync(cts.Token);
        var rest = new MemoryStream();
        await cmd.Stdout!.CopyToAsync(rest, cts.Token);
        Assert.Equal("first line\nsecond\n", seen + Encoding.UTF8.GetString(rest.ToArray()));
        var status = await cmd.StatusAsync(cts.Token);
        Assert.Equal("Success", status.Kind);
    }

    [Fact]
    public async Task Exec_OverSpdy_ReportsAFailingExitCode_AndStderr()
    {
        await using var s = await StartAsync("fail");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var url = (await c.Runtime.ExecAsync(new ExecRequest { ContainerId = id, Cmd = { "sh", "-c", "echo oops >&2; exit 42" }, Stdout = true, Stderr = true })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: false, stdout: true, stderr: true, tty: false, cts.Token);
        var err = new MemoryStream();
        await cmd.Stderr!.CopyToAsync(err, cts.Token);
        Assert.Equal("oops\n", Encoding.UTF8.GetString(err.ToArray()));
        var status = await cmd.StatusAsync(cts.Token);
        Assert.Equal("Failure", status.Kind);
        Assert.Equal("NonZeroExitCode", status.Reason);
        Assert.Equal(42, status.ExitCode);
    }

    [Fact]
    public async Task TwentyConcurrentExecs_OverWebSocket_EachGetsItsOwnOutputAndExitCode()
    {
        await using var s = await StartAsync("many");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));

        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(async i =>
        {
            var url = (await c.Runtime.ExecAsync(new ExecRequest
            {
                ContainerId = id, Cmd = { "sh", "-c", $"read x; echo session-{i}-$x; exit {i % 4}" }, Stdin = true, Stdout = true,
            })).Url;
            using var ws = new ClientWebSocket();
            ws.Options.AddSubProtocol("v5.channel.k8s.io");
            await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://")), cts.Token);
            await ws.SendAsync(Encoding.UTF8.GetBytes($"\0in{i}\n"), WebSocketMessageType.Binary, true, cts.Token);
            var channels = await ReadAllChannelsAsync(ws, cts.Token);
            return (i, Out: channels.GetValueOrDefault((byte)1) ?? "", Status: Status.Parse(channels[3]),
                All: string.Join(", ", channels.Select(kv => $"{kv.Key}: {kv.Value}")));
        }));
        foreach (var (i, output, status, all) in results)
        {
            Assert.True($"session-{i}-in{i}\n" == output, $"session {i}: stdout {output}; every channel: {all}");
            Assert.Equal(i % 4, status.ExitCode);
        }
    }

    /// <summary>Every frame until the server closes, as text per channel (its first byte).</summary>
    internal static async Task<Dictionary<byte, string>> ReadAllChannelsAsync(ClientWebSocket ws, CancellationToken ct)
    {
        var channels = new Dictionary<byte, StringBuilder>();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var frame = new MemoryStream();
            WebSocketReceiveResult r;
            do
            {
                r = await ws.ReceiveAsync(buffer, ct);
                frame.Write(buffer, 0, r.Count);
            }
            while (!r.EndOfMessage);
            if (r.MessageType == WebSocketMessageType.Close) break;
            var bytes = frame.ToArray();
            if (bytes.Length == 0) continue;
            if (!channels.TryGetValue(bytes[0], out var sb)) channels[bytes[0]] = sb = new StringBuilder();
            sb.Append(Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
        }
        return channels.ToDictionary(kv => kv.Key, kv => kv.Value.ToString());
    }

    [Fact]
    public async Task AttachToATtyContainer_SeesItsOutput_FeedsItsStdin_Resizes_AndTheLogHasIt()
    {
        await using var s = await StartAsync("attach", logDir: "logs");
        var (c, podId, pod) = (s.C, s.PodId, s.Pod);
        var config = Container("main", _registry.Image("busybox"), "sh");
        config.Tty = true;
        config.Stdin = true;
        var id = await c.StartNewAsync(podId, pod, config);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var url = (await c.Runtime.AttachAsync(new AttachRequest { ContainerId = id, Stdin = true, Stdout = true, Tty = true })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: false, tty: true, cts.Token);
        var seen = new StringBuilder();
        await cmd.SendResizeAsync(90, 30, cts.Token);
        // The quotes keep the typed line (echoed by the terminal) apart from the command's output.
        await cmd.Stdin!.WriteAsync("echo attached-''$((6*7))\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("attached-42"), cts.Token);
        // Resize applies to the container's own terminal (asked until seen, as in the exec test).
        var sizes = new List<string>();
        for (var attempt = 0; attempt < 20 && !sizes.Contains("30 90"); attempt++)
        {
            await cmd.Stdin.WriteAsync("stty size\n"u8.ToArray(), cts.Token);
            var m = await ReadUntilAsync(cmd.Stdout!, seen, SttySize(), cts.Token);
            sizes.Add($"{m.Groups[1].Value} {m.Groups[2].Value}");
            seen.Remove(0, m.Index + m.Length);
        }
        Assert.Contains("30 90", sizes);

        await cmd.Stdin.WriteAsync("exit 3\n"u8.ToArray(), cts.Token);
        var status = await cmd.StatusAsync(cts.Token);
        Assert.Equal(3, status.ExitCode);
        var exited = await c.WaitExitedAsync(id);
        Assert.Equal(3, exited.ExitCode);
        // A terminal's output is logged as stdout.
        Assert.Contains("attached-42", LogText(exited.LogPath, "stdout"));
    }

    [Fact]
    public async Task AttachWithStdinOnce_OverWebSocket_ClosingStdinEndsTheContainersInput()
    {
        await using var s = await StartAsync("stdinonce", logDir: "logs");
        var c = s.C;
        var id = await StartStdinOnceAsync(s, "while read line; do echo got-$line; done; echo stdin-closed; exit 5");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var url = (await c.Runtime.AttachAsync(new AttachRequest { ContainerId = id, Stdin = true, Stdout = true, Stderr = true })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://")), cts.Token);
        await ws.SendAsync("\0one\ntwo\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
        // v5: close the stdin channel (255, channel 0): end of file for the container's stdin.
        await ws.SendAsync(new byte[] { 255, 0 }, WebSocketMessageType.Binary, true, cts.Token);
        var channels = await Logged(s, ReadAllChannelsAsync(ws, cts.Token));
        Assert.Equal("got-one\ngot-two\nstdin-closed\n", channels.GetValueOrDefault((byte)1));
        Assert.True(Status.Parse(channels[3]).ExitCode == 5, $"status {channels[3]}{s.D.HelperLogs()}");
    }

    /// <summary>An attached container's exit code comes however long its shim takes to record the
    /// exit after the output ended (a durable write on a loaded node can take seconds): the shim is
    /// stopped (SIGSTOP) between the container closing its output and its exit, and the attach
    /// waits for it rather than ending without an exit code.</summary>
    [Fact]
    public async Task Attach_WhenTheShimRecordsTheExitLate_StillReportsTheExitCode()
    {
        await using var s = await StartAsync("lateexit", logDir: "logs");
        var c = s.C;
        // Closes its output at the first line, exits 5 at the end of its input.
        var id = await StartStdinOnceAsync(s, "read line; echo closing; exec >&- 2>&-; cat > /dev/null; exit 5");
        var stateDir = Path.Combine(s.D.State, "c", id[..20]);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var shimLog = Path.Combine(stateDir, "shim.log");
        int HandedOver() => File.ReadAllText(shimLog).Split("the monitor handed over").Length - 1;
        var handedOverBefore = HandedOver();

        var url = (await c.Runtime.AttachAsync(new AttachRequest { ContainerId = id, Stdin = true, Stdout = true, Stderr = true })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://")), cts.Token);
        var (shim, init) = s.D.ContainerPids(id);
        await ws.SendAsync("\0first\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
        // The container has closed its output: the shim's output relays ended with it, and with
        // nobody attached any more, the shim has gone back to the monitor.
        await ProcState.Eventually(() => HandedOver() > handedOverBefore && Threads(shim).SequenceEqual(["criruntime-moni"]),
            () => $"the shim back in the monitor after the attach (threads: {string.Join(", ", Threads(shim))}); shim log: {File.ReadAllText(shimLog)}", cts.Token);
        var reading = ReadAllChannelsAsync(ws, cts.Token);
        Assert.Equal(0, ProcState.Signal(shim, ProcState.SigStop));
        try
        {
            await ws.SendAsync("\0rest\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
            await ws.SendAsync(new byte[] { 255, 0 }, WebSocketMessageType.Binary, true, cts.Token);
            await ProcState.Eventually(() => ProcState.Of(init) is 'Z' or null, () => $"the container exited (state {ProcState.Of(init)})", cts.Token);
            // Longer than the stream server's grace for a container that runs on without output.
            var early = await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(8), cts.Token));
            Assert.True(early != reading, $"the attach ended while the shim could not record the exit: {(reading.IsCompletedSuccessfully ? string.Join(", ", reading.Result.Select(kv => $"{kv.Key}: {kv.Value}")) : reading.Exception?.Message)}");
        }
        finally
        {
            ProcState.Signal(shim, ProcState.SigCont);
        }
        var channels = await reading;
        Assert.Equal("closing\n", channels.GetValueOrDefault((byte)1));
        Assert.Equal(5, Status.Parse(channels[3]).ExitCode);
        Assert.Equal(5, (await c.WaitExitedAsync(id)).ExitCode);
    }

    /// <summary>The names of a process's threads.</summary>
    private static IEnumerable<string> Threads(int pid) =>
        Directory.EnumerateDirectories($"/proc/{pid}/task")
            .Select(t => { try { return File.ReadAllText(Path.Combine(t, "comm")).Trim(); } catch (IOException) { return ""; } });

}
