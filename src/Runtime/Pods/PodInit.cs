using System.Diagnostics;
using System.Globalization;
using CriRuntime.Errors;
using CriRuntime.Interop;

namespace CriRuntime.Pods;

/// <summary>The pid 1 of a pod's shared pid namespace (NamespaceMode POD): `criruntime-pod-init`
/// (src/PodInit/pod-init.c), next to the daemon's binary. A pid namespace dies with its pid 1, so
/// the pod needs one that lives as long as the pod, not its first container. Its cmdline,
/// `criruntime-pod-init POD_ID STATE_DIR [USERNS]`, is its identity: a recorded pid is only ever
/// acted on through a pidfd whose process has that cmdline, so a reused pid is never signalled.
/// In a pod with a user namespace (USERNS, its pin) the init joins it first and is its root, so
/// the pid namespace is owned by the pod's user namespace, as the containers' other ones are.</summary>
public static class PodInit
{
    public const string BinaryName = "criruntime-pod-init";
    /// <summary>The pod init's cgroup, below the pod's (not 64 hex digits: never a container's).</summary>
    public const string CgroupLeaf = "pod-init";

    public static string BinaryPath => Path.Combine(AppContext.BaseDirectory, BinaryName);

    /// <summary>Starts the pod init of <paramref name="podId"/>, in the user namespace pinned at
    /// <paramref name="userNs"/> when the pod has one; returns its host pid.</summary>
    public static async Task<int> StartAsync(string podId, string stateDir, string? userNs, CancellationToken ct)
    {
        if (!File.Exists(BinaryPath))
            throw Fail.FailedPrecondition($"config.linux.security_context.namespace_options.pid: POD needs {BinaryPath}, which is missing (`make build` builds it)");
        var psi = new ProcessStartInfo(BinaryPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(podId);
        psi.ArgumentList.Add(stateDir);
        if (userNs is not null) psi.ArgumentList.Add(userNs);
        using var p = Process.Start(psi) ?? throw Fail.Unavailable($"cannot start {BinaryPath}");
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        var output = (await stdout).Trim();
        if (p.ExitCode != 0 || !int.TryParse(output, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            throw Fail.Unavailable($"{BinaryPath} failed (exit {p.ExitCode}): {(await stderr).Trim()}");
        using var pidfd = Open(pid, podId, stateDir)
            ?? throw Fail.Unavailable($"pod init {pid} of pod {podId} exited at once");
        return pid;
    }

    /// <summary>True while <paramref name="pid"/> is the pod init of <paramref name="podId"/>.</summary>
    public static bool IsRunning(int pid, string podId, string stateDir)
    {
        using var pidfd = Open(pid, podId, stateDir);
        return pidfd is not null;
    }

    /// <summary>Ends the pod init (SIGTERM, SIGKILL after 2 s) and waits until it has exited; the
    /// kernel then kills whatever was left in its pid namespace. Idempotent: a pod init that is
    /// already gone, or a pid that now belongs to another process, is success.</summary>
    public static Task StopAsync(int pid, string podId, string stateDir) => Task.Run(() =>
    {
        using var pidfd = Open(pid, podId, stateDir);
        if (pidfd is null) return;
        if (!Libc.PidfdSignal(pidfd, Libc.SIGTERM) || Libc.PidfdWaitExit(pidfd, TimeSpan.FromSeconds(2))) return;
        if (Libc.PidfdSignal(pidfd, Libc.SIGKILL)) Libc.PidfdWaitExit(pidfd, TimeSpan.FromSeconds(10));
    });

    /// <summary>Every running pod init of this daemon (its state dir), by pid and pod id: after a
    /// crash, the inits of pods that were never recorded.</summary>
    public static IEnumerable<(int Pid, string PodId)> Running(string stateDir)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            if (Args(pid) is [var exe, var podId, var dirArg, ..] and { Length: 3 or 4 } && IsPodInit(exe) && dirArg == stateDir)
                yield return (pid, podId);
        }
    }

    /// <summary>The pod init's own cgroup (the <see cref="CgroupLeaf"/> it was moved to), from
    /// /proc/PID/cgroup; null when it is not in one (yet).</summary>
    public static string? CgroupOf(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/cgroup"))
            {
                var path = line[(line.IndexOf(':', line.IndexOf(':') + 1) + 1)..];
                if (path.EndsWith("/" + CgroupLeaf, StringComparison.Ordinal)) return path;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>A pidfd of <paramref name="pid"/> if it is the pod init of <paramref name="podId"/>,
    /// checked after the pidfd was opened (so the check and the handle are about one process).</summary>
    private static FdHandle? Open(int pid, string podId, string stateDir)
    {
        var pidfd = Libc.PidfdOpen(pid);
        if (pidfd is null) return null;
        if (Args(pid) is [var exe, var id, var dir, ..] and { Length: 3 or 4 } && IsPodInit(exe) && id == podId && dir == stateDir) return pidfd;
        pidfd.Dispose();
        return null;
    }

    private static bool IsPodInit(string argv0) => Path.GetFileName(argv0) == BinaryName;

    private static string[]? Args(int pid)
    {
        try
        {
            var raw = File.ReadAllText($"/proc/{pid}/cmdline");
            return raw.Length == 0 ? null : raw.TrimEnd('\0').Split('\0');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
