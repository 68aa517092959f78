using System.Net.Sockets;
using System.Threading.Channels;
using CriRuntime.Containers;
using CriRuntime.Errors;
using CriRuntime.Interop;
using CriRuntime.Shim.Client;
using CriRuntime.Streaming.PortForward;

namespace CriRuntime.Streaming;

/// <summary>The stream server's <see cref="IStreamingRuntime"/>. Exec and attach go through the
/// container's shim (exec-stream, attach): the shim starts the process (with a terminal made in
/// the container's devpts, or stdio sockets) and passes connected unix sockets, which are relayed
/// here to the client's streams, live, in both directions. Port forwarding runs in the pod's
/// network namespace. Everything it needs comes with the target (the daemon resolved it when it
/// handed out the URL), so it runs in the stream server process, without the daemon's stores.</summary>
public sealed class StreamingRuntime(SandboxPortForwarder portForwarder, ShimRunner shims) : IStreamingRuntime
{
    /// <summary>How long the output may stand still after the process exited before the session
    /// ends without its end of file (a background child holding stdout is not waited for).</summary>
    private static readonly TimeSpan OutputGrace = TimeSpan.FromSeconds(2);

    public async Task<int> ExecAsync(ContainerTarget c, IReadOnlyList<string> cmd, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct)
    {
        using var session = await shims.OpenStreamAsync(c.StateDir,
            new ShimRequest { Op = ShimOps.ExecStream, Args = cmd, Tty = tty, Stdin = stdin is not null }, ct);
        using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var pid = session.First.Pid;

        var outputs = new List<Task>();
        var inputs = new List<Task>();
        var progress = new OutputProgress();
        if (tty)
        {
            var terminal = session["tty"] ?? throw Fail.Unavailable("exec-stream: the shim sent no terminal");
            progress.Sockets.Add(terminal);
            outputs.Add(CopyOutAsync(terminal, stdout, done.Token, progress));
            if (stdin is not null) inputs.Add(CopyInAsync(stdin, terminal, shutdownOnEnd: true, done.Token));
            if (resize is not null) inputs.Add(ResizeAsync(c.StateDir, pid, resize, done.Token));
        }
        else
        {
            progress.Sockets.AddRange([session["stdout"]!, session["stderr"]!]);
            outputs.Add(CopyOutAsync(session["stdout"]!, stdout, done.Token, progress));
            outputs.Add(CopyOutAsync(session["stderr"]!, stderr, done.Token, progress));
            if (stdin is not null && session["stdin"] is { } inSocket) inputs.Add(CopyInAsync(stdin, inSocket, shutdownOnEnd: true, done.Token));
        }

        try
        {
            var final = await session.NextAsync(ct)
                ?? throw Fail.FailedPrecondition($"container {c.Id} exited during the exec");
            if (final.Exec is not { } result) throw Fail.Unavailable($"exec: {final.Error ?? "the shim reported no exit status"}");
            await DrainAsync(Task.WhenAll(outputs), progress, ct);
            return result.ExitCode;
        }
        finally
        {
            await done.CancelAsync();
            await Quietly(outputs.Concat(inputs));
        }
    }

    public async Task<int> AttachAsync(ContainerTarget c, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct)
    {
        if (stdin is not null && !c.Stdin)
            throw Fail.FailedPrecondition($"container {c.Id} was not created with stdin: true; attach without stdin");
        if (tty != c.Tty)
            throw Fail.FailedPrecondition($"container {c.Id} has tty: {c.Tty.ToString().ToLowerInvariant()}; attach with the same tty setting");
        using var session = await shims.OpenStreamAsync(c.StateDir, new ShimRequest { Op = ShimOps.Attach, Stdin = stdin is not null }, ct);
        using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);

        var outputs = new List<Task>();
        var inputs = new List<Task>();
        if (session["tty"] is { } terminal)
        {
            outputs.Add(CopyOutAsync(terminal, stdout, done.Token));
            if (stdin is not null) inputs.Add(CopyInAsync(stdin, terminal, shutdownOnEnd: true, done.Token));
            if (resize is not null) inputs.Add(ResizeAsync(c.StateDir, null, resize, done.Token));
        }
        else
        {
            outputs.Add(CopyOutAsync(session["stdout"]!, stdout, done.Token));
            outputs.Add(CopyOutAsync(session["stderr"]!, stderr, done.Token));
            // stdin_once: the first attach that closes stdin closes it for the container too
            // (shutdown of the container's own stdin socket); otherwise it stays open for the next.
            if (stdin is not null && session["stdin"] is { } inSocket)
                inputs.Add(CopyInAsync(stdin, inSocket, shutdownOnEnd: c.StdinOnce, done.Token));
        }

        // The init's pidfd, taken while it runs (the shim answered with its state): after the
        // output ends it tells a container that exited from one that closed its output and runs on.
        using var init = session.First.State is { Pid: > 0 } running ? Libc.PidfdOpen(running.Pid) : null;
        try
        {
            // The shim ends the output streams when the container's pipes reach end of file (it
            // exits, or closes them), when it has exited, or when a client does not keep up.
            await Task.WhenAll(outputs).WaitAsync(ct);
            return await ExitAfterOutputAsync(c, init, ct);
        }
        finally
        {
            await done.CancelAsync();
            await Quietly(outputs.Concat(inputs));
        }
    }

    /// <summary>The exit code of an attached container whose output has ended. The pipes reach
    /// end of file as the container exits, before its shim has reaped it and durably recorded the
    /// exit; on a loaded node that record can take seconds (an fsync behind other writers), and it
    /// is waited for up to <see cref="RecordGrace"/>. A container whose init still runs
    /// <see cref="ExitGrace"/> after its output ended (it closed stdout and stderr) ends the
    /// attach without an exit code.</summary>
    private async Task<int> ExitAfterOutputAsync(ContainerTarget c, FdHandle? init, CancellationToken ct)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var exit = shims.WaitAsync(c.Id, c.StateDir, wait.Token);
        try
        {
            using (var grace = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                var first = await Task.WhenAny(exit, Task.Delay(ExitGrace, grace.Token));
                await grace.CancelAsync();
                ct.ThrowIfCancellationRequested();
                if (first != exit && init is not null && !Libc.PidfdWaitExit(init, TimeSpan.Zero))
                    throw Fail.Unavailable($"attach to container {c.Id}: the output ended but the container has not exited");
            }
            wait.CancelAfter(RecordGrace);
            var state = await exit;
            return state.ExitCode ?? throw Fail.Unavailable($"attach to container {c.Id}: its shim recorded no exit code");
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw Fail.Unavailable($"attach to container {c.Id}: it exited, and its shim has not recorded the exit within {RecordGrace.TotalSeconds:0} s");
        }
        finally
        {
            await wait.CancelAsync();
            await ((Task)exit).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>How long an attached container's init may run on after its output ended.</summary>
    private static readonly TimeSpan ExitGrace = TimeSpan.FromSeconds(5);

    /// <summary>How long the shim may take to record an exit that has happened.</summary>
    private static readonly TimeSpan RecordGrace = TimeSpan.FromSeconds(30);

    public Task PortForwardAsync(PodTarget pod, int port, Stream stream, CancellationToken ct) =>
        portForwarder.ForwardAsync(pod, port, stream, ct);

    /// <summary>What the output relays of one exec have done, for <see cref="DrainAsync"/>.</summary>
    private sealed class OutputProgress
    {
        public long Chunks;
        /// <summary>Chunks read and not yet written to the client.</summary>
        public int InFlight;
        public readonly List<Socket> Sockets = [];
        public bool Moved(long since) =>
            Interlocked.Read(ref Chunks) != since || Volatile.Read(ref InFlight) > 0 || Sockets.Any(Pending);

        private static bool Pending(Socket s)
        {
            try { return s.Available > 0; }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return false; }
        }
    }

    /// <summary>After the process exited: waits for its output to reach end of file. Output that
    /// has been written is always delivered, however slowly this process gets to it (a loaded
    /// node must not cut it short); only output that stands still for <see cref="OutputGrace"/>
    /// without an end of file (a background child holding the stream) ends the wait.</summary>
    private static async Task DrainAsync(Task outputs, OutputProgress progress, CancellationToken ct)
    {
        while (true)
        {
            var before = Interlocked.Read(ref progress.Chunks);
            if (await Task.WhenAny(outputs, Task.Delay(OutputGrace, ct)) == outputs || !progress.Moved(before)) return;
        }
    }

    /// <summary>socket → client stream until end of file; without a client stream the output is
    /// read and dropped (the process must not block on a full socket).</summary>
    private static async Task CopyOutAsync(Socket socket, Stream? to, CancellationToken ct, OutputProgress? progress = null)
    {
        var buffer = new byte[32 * 1024];
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (n == 0) return;
            if (progress is not null) Interlocked.Increment(ref progress.InFlight);
            try
            {
                if (to is not null) await to.WriteAsync(buffer.AsMemory(0, n), ct);
            }
            finally
            {
                if (progress is not null)
                {
                    Interlocked.Decrement(ref progress.InFlight);
                    Interlocked.Increment(ref progress.Chunks);
                }
            }
        }
    }

    /// <summary>client stream → socket; at the client's end of stdin, shut the socket's write side
    /// (end of file for the process; VEOF for a terminal).</summary>
    private static async Task CopyInAsync(Stream from, Socket socket, bool shutdownOnEnd, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var n = await from.ReadAsync(buffer, ct);
            if (n == 0) break;
            await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, ct);
        }
        if (shutdownOnEnd) socket.Shutdown(SocketShutdown.Send);
    }

    private async Task ResizeAsync(string stateDir, int? pid, ChannelReader<TerminalSize> sizes, CancellationToken ct)
    {
        await foreach (var size in sizes.ReadAllAsync(ct))
            await shims.ResizeAsync(stateDir, pid, size.Width, size.Height, ct);
    }

    /// <summary>Waits for the relays after the session ended; their cancellation and the client or
    /// process having gone are the expected ways for them to stop.</summary>
    private static async Task Quietly(IEnumerable<Task> tasks)
    {
        foreach (var t in tasks)
        {
            try { await t; }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException or CriException) { }
        }
    }
}
