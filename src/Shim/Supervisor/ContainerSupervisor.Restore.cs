using System.Text.Json;
using CriRuntime.Files;
using CriRuntime.Interop;
using CriRuntime.Shim.Client;
using L = CriRuntime.Shim.Kernel.Abi;

namespace CriRuntime.Shim.Supervisor;

/// <summary>A container created from a checkpoint (bundle/restore.json, written by the daemon):
/// the shim runs `criu restore` at start instead of releasing an init. The shim runs it rather
/// than the daemon because the restored init must be the shim's child (--restore-sibling), to be
/// reaped, signalled through a pidfd and have its exit code recorded like any other container's,
/// and because the new stdout/stderr pipes CRIU hands the process are the shim's log pumps.</summary>
public sealed partial class ContainerSupervisor
{
    private RestoreSpec? LoadRestore()
    {
        var path = Path.Combine(_bundle, RestoreSpec.FileName);
        if (!File.Exists(path)) return null;
        return JsonSerializer.Deserialize(File.ReadAllBytes(path), ShimJsonContext.Default.RestoreSpec)
            ?? throw new InvalidDataException($"{path}: the document is null");
    }

    private void CloseRestorePipes()
    {
        _restoreOut?.Dispose();
        _restoreErr?.Dispose();
        _restoreOut = _restoreErr = null;
    }

    /// <summary>Under <see cref="_lock"/>: CRIU restores the container into its pipes, namespaces
    /// and cgroup; on failure the container has exited with CRIU's error (the tail of restore.log).</summary>
    private ShimResponse StartRestore(RestoreSpec restore)
    {
        var files = new List<FdHandle>();
        string? failure;
        var started = ShimPhase.Now();
        try
        {
            var fds = new Dictionary<int, int> { [0] = -1, [1] = -1, [2] = -1 };
            if (restore.StdoutFd > 0) fds[restore.StdoutFd] = _restoreOut!.Fd;
            if (restore.StderrFd > 0 && restore.StderrFd != restore.StdoutFd) fds[restore.StderrFd] = _restoreErr!.Fd;
            foreach (var (fd, path) in restore.Files)
            {
                var h = FdHandle.Open(path, Libc.O_RDONLY);
                files.Add(h);
                fds[int.Parse(fd, System.Globalization.CultureInfo.InvariantCulture)] = h.Fd;
            }
            failure = _spawner.StartRestore(restore.Criu, [restore.Criu, .. restore.Args], [.. Spawn.CurrentEnvironment(), .. restore.Env], fds, restore.PidFile, restore.Nice);
            // Ended and reaped while CRIU was still finishing: no pidfd can be had any more.
            if (failure is null && _spawner.RestoredPidFd is null && _spawner.HasExited)
                failure = $"the restored process {_spawner.Pid} exited before criu restore returned (status {_spawner.RawStatus})";
        }
        catch (Exception e) when (e is IOException or KernelException or ArgumentException)
        {
            failure = e.Message;
            _spawner.ExitUnstarted(1 << 8);
        }
        finally
        {
            foreach (var f in files) f.Dispose();
            // CRIU (and through it the restored process) holds the write ends now.
            CloseRestorePipes();
        }
        if (failure is not null)
        {
            _startError = $"criu restore failed ({failure}){RestoreLogTail(restore.LogFile)}";
            _log.Error($"start {_id}: {_startError}");
            return new ShimResponse { Ok = false, Error = _startError, State = _state };
        }
        var pid = _spawner.Pid;
        _pidfd = _spawner.RestoredPidFd ?? Spawn.PidFdOpen(pid);
        _state = _state with { Pid = pid };
        AtomicFile.Write(Path.Combine(_stateDir, StateFiles.ContainerPid), System.Text.Encoding.UTF8.GetBytes($"{pid}\n"), StateFileMode, durable: false);
        _log.Info($"container {_id}: restored, init pid {pid}");
        Transition(s => s with { Status = ShimStatus.Running, StartedAt = DateTimeOffset.UtcNow });
        return new ShimResponse { Ok = true, State = _state, Phases = [new ShimPhase { Name = "shim.criu-restore", Start = started, End = ShimPhase.Now() }] };
    }

    /// <summary>A kill or stop of a restored container that was never started: it exits without a
    /// process (as an init killed before start would). True when that was the case.</summary>
    private bool EndUnstartedRestore(int signal)
    {
        if (_restore is null) return false;
        lock (_lock)
        {
            if (_pidfd is not null || _state.Status != ShimStatus.Created) return _pidfd is null;
            _spawner.ExitUnstarted(signal & 0x7f);
            CloseRestorePipes();
            return true;
        }
    }

    /// <summary>The last error lines of CRIU's restore.log (else its last lines), for the message.</summary>
    private static string RestoreLogTail(string log)
    {
        try
        {
            var lines = File.ReadAllLines(log);
            var picked = lines.Where(l => l.Contains("Error", StringComparison.Ordinal)).TakeLast(4).ToList();
            if (picked.Count == 0) picked = [.. lines.TakeLast(3)];
            return picked.Count == 0 ? "" : ": " + string.Join(" | ", picked.Select(l => l.Trim()));
        }
        catch (IOException) { return $" (no {log})"; }
    }
}
