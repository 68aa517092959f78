using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace CriRuntime.Shim.Client;

/// <summary>The daemon's side of the control socket: one connection per request. When the shim
/// is gone (its container exited and the shim with it) the state comes from state.json, which
/// the shim wrote before exiting.</summary>
public sealed class ShimClient(string stateDir)
{
    public string StateDir { get; } = stateDir;

    /// <summary>Sends one request. A shim that is gone (or closing: its container has exited)
    /// is answered from state.json: state and wait get the final state, kill and stop succeed
    /// (the container is already stopped, and stop is idempotent), start and update fail.</summary>
    public async Task<ShimResponse> SendAsync(ShimRequest request, CancellationToken ct = default)
    {
        try { return await SendOnceAsync(request, ct).ConfigureAwait(false); }
        catch (Exception e) when (e is SocketException or IOException && ReadStateFile(StateDir) is { Status: ShimStatus.Stopped })
        {
            return AnswerFromFinalState(request, ReadStateFile(StateDir)!);
        }
    }

    /// <summary>The answer to a request for a shim that is gone, whose container has exited with
    /// <paramref name="final"/>: start and update fail (there is no process to start, no cgroup
    /// to update), everything else succeeds with the final state.</summary>
    public static ShimResponse AnswerFromFinalState(ShimRequest request, ShimState final) =>
        request.Op is ShimOps.Start or ShimOps.Update
            ? new ShimResponse { Ok = false, Error = $"container {final.Id} has exited", State = final }
            : new ShimResponse { Ok = true, State = final };

    private async Task<ShimResponse> SendOnceAsync(ShimRequest request, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var path = Path.Combine(StateDir, StateFiles.Socket);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var line = JsonSerializer.SerializeToUtf8Bytes(request, ShimJsonContext.Default.ShimRequest);
        await stream.WriteAsync(line, ct).ConfigureAwait(false);
        await stream.WriteAsync("\n"u8.ToArray(), ct).ConfigureAwait(false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var answer = await reader.ReadLineAsync(ct).ConfigureAwait(false)
            ?? throw new IOException($"shim {path}: connection closed without an answer to {request.Op}");
        return JsonSerializer.Deserialize(answer, ShimJsonContext.Default.ShimResponse)
            ?? throw new IOException($"shim {path}: empty answer to {request.Op}");
    }

    /// <summary>The live state, or the last state written when the shim is no longer there.</summary>
    public async Task<ShimState?> StateAsync(CancellationToken ct = default)
    {
        try
        {
            var r = await SendAsync(new ShimRequest { Op = ShimOps.State }, ct).ConfigureAwait(false);
            if (r.State is not null) return r.State;
        }
        catch (Exception e) when (e is SocketException or IOException) { }
        return ReadStateFile(StateDir);
    }

    /// <summary>Whether the shim of <paramref name="stateDir"/> still runs: the pid in shim.pid
    /// is a `criruntime-shim supervise` for this state dir (a reused pid is another program).</summary>
    public static bool IsShimAlive(string stateDir)
    {
        try
        {
            return IsShimProcess(ReadShimPid(stateDir), stateDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return false; // no shim.pid (never created)
        }
    }

    private static int ReadShimPid(string stateDir) =>
        int.Parse(File.ReadAllText(Path.Combine(stateDir, StateFiles.ShimPid)).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Whether <paramref name="pid"/> is a live `supervise` of <paramref name="stateDir"/>.</summary>
    private static bool IsShimProcess(int pid, string stateDir)
    {
        try
        {
            var cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
            // Empty while the process is inside execve (the .NET supervisor and the monitor exec
            // each other, same pid, docs/shim-protocol.md): between the switch to the new image and
            // its arguments being set up, cmdline reads "". A zombie reads "" too, and is dead.
            if (cmdline.Length == 0) return IsLiveUserProcess(File.ReadAllText($"/proc/{pid}/stat"));
            var args = cmdline.Split('\0');
            var full = Path.GetFullPath(stateDir);
            return args.Contains("supervise") && args.Any(a => a == stateDir || a == full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // no such process
        }
    }

    /// <summary>A pidfd of the shim of <paramref name="stateDir"/>: opened first, then the process
    /// checked to be that shim, so a pid reused in between is never taken for it. Null when there
    /// is no such shim.</summary>
    public static Interop.FdHandle? OpenShimPidfd(string stateDir)
    {
        try
        {
            var pid = ReadShimPid(stateDir);
            var pidfd = Interop.Libc.PidfdOpen(pid);
            if (pidfd is null || IsShimProcess(pid, stateDir)) return pidfd;
            pidfd.Dispose();
            return null;
        }
        catch (Exception e) when (e is IOException or FormatException or OverflowException or Interop.KernelException)
        {
            return null;
        }
    }

    /// <summary>SIGKILLs the shim of <paramref name="stateDir"/> (a stopped one too); false when it
    /// was gone. Its container's init has PR_SET_PDEATHSIG=SIGKILL and dies with it.</summary>
    public static bool KillShim(string stateDir)
    {
        using var pidfd = OpenShimPidfd(stateDir);
        return pidfd is not null && Interop.Libc.PidfdSignal(pidfd, Interop.Libc.SIGKILL);
    }

    /// <summary>From /proc/PID/stat: neither a zombie nor dead, nor a kernel thread (whose
    /// cmdline is empty too: a pid reused by one is not our shim).</summary>
    public static bool IsLiveUserProcess(string stat)
    {
        var close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 >= stat.Length) return false;
        var fields = stat[(close + 2)..].Split(' ');
        // fields[0]: state; fields[6]: flags (stat's 9th field).
        if (fields.Length < 7 || fields[0] is "Z" or "X" or "x") return false;
        const uint PfKthread = 0x00200000;
        return uint.TryParse(fields[6], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var flags)
            && (flags & PfKthread) == 0;
    }

    /// <summary>The final state of a container whose shim died before recording one (killed, or
    /// crashed): its init has PR_SET_PDEATHSIG=SIGKILL, so the container died with the shim, but no
    /// one reaped it for us and its exit status is unknown: 255, as other runtimes report then.</summary>
    public static ShimState ShimDied(ShimState? last, string id, DateTimeOffset now) => (last ?? new ShimState { Id = id }) with
    {
        Status = ShimStatus.Stopped,
        FinishedAt = now,
        ExitCode = UnknownExitCode,
        Signal = null,
        Reason = "Error",
        Message = $"the container's shim{(last is { ShimPid: > 0 } l ? $" (pid {l.ShimPid})" : "")} died without recording the container's exit " +
            "(killed or crashed); the container was killed with it, exit status unknown",
    };

    /// <summary>The exit code reported when the real one is unknown.</summary>
    public const int UnknownExitCode = 255;

    public static ShimState? ReadStateFile(string stateDir)
    {
        var path = Path.Combine(stateDir, StateFiles.State);
        try { return JsonSerializer.Deserialize(File.ReadAllBytes(path), ShimJsonContext.Default.ShimState); }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        // Only a host crash leaves a state file unreadable (it is replaced by rename, and written
        // without fsync while the container is created or running): the shim is gone then too.
        catch (JsonException) { return null; }
    }
}
