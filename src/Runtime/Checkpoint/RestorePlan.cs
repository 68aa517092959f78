using System.Globalization;
using System.Text.RegularExpressions;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;

namespace CriRuntime.Checkpoint;

/// <summary>The `criu restore` the shim runs for a container created from a checkpoint archive,
/// decided from the new container's spec (built from the request, never from the archive) and
/// the archive's stdio record (pure: unit-tested without CRIU). The counterpart of
/// <see cref="DumpPlan"/>: every mount the dump declared external is supplied again from the new
/// spec (bind mounts by their new source, masked files by /dev/null), the pod's namespaces CRIU
/// did not dump are handed over as inherited fds, and the init's old stdout/stderr pipes are
/// replaced by new ones into the new container's CRI log.</summary>
public static partial class RestorePlan
{
    /// <summary>The fds the shim gives CRIU: the new stdout/stderr pipes, the pod's namespaces. High
    /// numbers, so that none is also one of the shim's own descriptors being passed (Spawn.Run).</summary>
    public const int StdoutFd = 100, StderrFd = 101, NetNsFd = 102, PidNsFd = 103;

    [GeneratedRegex(@"^pipe:\[[0-9]{1,20}\]$")]
    private static partial Regex PipeName();

    /// <param name="dir">the unpacked archive's directory: CRIU's work dir (restore.log, the pid file).</param>
    /// <param name="cgroupPath">the new container's cgroup, relative to the hierarchies' roots.</param>
    /// <param name="criuEnv">[checkpoint] criu_env.</param>
    /// <param name="unmanagedCgroups">hierarchies the cgroup manager does not make a container cgroup
    /// in ("name=systemd" on hybrid hosts) and the cgroup there to restore into (the daemon's own,
    /// where the shim and a fresh container's init stay): without it CRIU would create the
    /// container's path there, which nothing removes.</param>
    public static RestoreSpec Build(string criu, IReadOnlyList<string> criuEnv, CheckpointSource source, string dir, string rootfs, Spec spec, string cgroupPath,
        IReadOnlyDictionary<string, string>? unmanagedCgroups = null, string? emptyDir = null,
        IReadOnlyList<(string Path, string HostDir)>? tmpfs = null)
    {
        var pidFile = Path.Combine(dir, "restore.pid");
        var args = new List<string>
        {
            "restore", "--images-dir", source.ImagesDir, "--work-dir", dir, "--log-file", "restore.log", "-v4",
            "--root", rootfs,
            // The restored init becomes the shim's child (CLONE_PARENT) and CRIU exits once it runs.
            "--restore-detached", "--restore-sibling", "--pidfile", pidFile,
            // The new pod has another address: connections the dump captured are restored closed.
            "--tcp-close", "--file-locks",
            // Into the new container's cgroup (made by the shim, limits kept: soft mode only sets
            // properties of cgroups CRIU itself creates).
            "--manage-cgroups=soft", "--cgroup-root", "/" + cgroupPath.Trim('/'),
        };
        foreach (var (controller, path) in unmanagedCgroups ?? new Dictionary<string, string>())
            args.AddRange(["--cgroup-root", $"{controller}:{path}"]);
        foreach (var (key, hostPath) in ExternalMounts(spec, emptyDir, tmpfs))
            args.AddRange(["--external", $"mnt[{key}]:{hostPath}"]);
        var files = new Dictionary<string, string>();
        foreach (var ns in spec.Linux?.Namespaces ?? [])
        {
            if (string.IsNullOrEmpty(ns.Path)) continue;
            // The new pod's uts and ipc namespaces, as a fresh container of the pod joins them
            // (the dump captured the old pod's as the container's own).
            if (ns.Type is "uts" or "ipc")
            {
                args.AddRange(["--join-ns", $"{ns.Type}:{ns.Path}"]);
                continue;
            }
            var (fd, key) = ns.Type switch { "network" => (NetNsFd, DumpPlan.NetNsKey), "pid" => (PidNsFd, DumpPlan.PidNsKey), _ => (0, "") };
            if (fd == 0) continue;
            files[fd.ToString(CultureInfo.InvariantCulture)] = ns.Path;
            args.AddRange(["--inherit-fd", $"fd[{fd}]:{key}"]);
        }
        var (stdoutFd, stderrFd) = (0, 0);
        var fds = source.Stdio?.Fds ?? [];
        string? Pipe(int n) => n < fds.Count && fds[n].StartsWith("pipe:", StringComparison.Ordinal)
            ? PipeName().IsMatch(fds[n]) ? fds[n] : throw new InvalidDataException($"checkpoint archive: {CheckpointSource.StdioFile}: fd {n} \"{fds[n]}\" is not a pipe name")
            : null;
        if (Pipe(1) is { } outPipe)
        {
            stdoutFd = StdoutFd;
            args.AddRange(["--inherit-fd", $"fd[{StdoutFd}]:{outPipe}"]);
        }
        if (Pipe(2) is { } errPipe)
        {
            stderrFd = errPipe == Pipe(1) ? StdoutFd : StderrFd;
            if (stderrFd == StderrFd) args.AddRange(["--inherit-fd", $"fd[{StderrFd}]:{errPipe}"]);
        }
        return new RestoreSpec
        {
            Criu = criu, Args = args, Env = criuEnv, StdoutFd = stdoutFd, StderrFd = stderrFd, Files = files,
            PidFile = pidFile, LogFile = Path.Combine(dir, "restore.log"), Nice = Criu.CriuNice,
        };
    }

    /// <summary>The restore of a lazy migration: <paramref name="plan"/> with `--lazy-pages`, so CRIU
    /// restores the tasks without their memory and hands their userfaultfds to the `criu
    /// lazy-pages` daemon listening in the same work directory (<see cref="LazyPagesArgs"/>).</summary>
    public static RestoreSpec WithLazyPages(RestoreSpec plan) =>
        plan.Args.Contains("--lazy-pages") ? plan : plan with { Args = [.. plan.Args, "--lazy-pages"] };

    /// <summary>The restore of a migrated pod that kept its addresses: the TCP connections the dump
    /// captured (`criu dump --tcp-established`) are restored established, in place of
    /// <paramref name="plan"/>'s `--tcp-close`.</summary>
    public static RestoreSpec WithTcpEstablished(RestoreSpec plan) =>
        plan with { Args = [.. plan.Args.Select(a => a == "--tcp-close" ? "--tcp-established" : a)] };

    /// <summary>`criu lazy-pages` for the restore <paramref name="plan"/>: the same images and work
    /// directory (its socket, lazy-pages.socket, is found there by the restore), pages pulled from
    /// the source's page server at <paramref name="host"/>:<paramref name="port"/>.</summary>
    public static IReadOnlyList<string> LazyPagesArgs(RestoreSpec plan, string host, int port) =>
    [
        "lazy-pages", "--images-dir", ArgValue(plan, "--images-dir"), "--work-dir", ArgValue(plan, "--work-dir"), "--log-file", "lazy-pages.log", "-v4",
        "--page-server", "--address", host, "--port", port.ToString(CultureInfo.InvariantCulture),
    ];

    /// <summary>The value after option <paramref name="name"/> in the restore's arguments.</summary>
    public static string ArgValue(RestoreSpec plan, string name)
    {
        var i = plan.Args.ToList().IndexOf(name);
        return i >= 0 && i + 1 < plan.Args.Count ? plan.Args[i + 1] : throw new InvalidDataException($"restore.json: no {name}");
    }

    /// <summary>The named (controller-less) v1 hierarchies a process is in, from /proc/PID/cgroup
    /// ("1:name=systemd:/user.slice"): name → path.</summary>
    public static IReadOnlyDictionary<string, string> NamedHierarchies(string procCgroup)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in procCgroup.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(':', 3);
            if (fields.Length == 3 && fields[1].StartsWith("name=", StringComparison.Ordinal)) result[fields[1]] = fields[2];
        }
        return result;
    }

    /// <summary>The empty directory under <paramref name="emptyDir"/> a masked directory
    /// <paramref name="path"/> is restored from: one per path, because CRIU takes two external
    /// mounts of one source for binds of each other and then skips the second one's read-only
    /// remount (measured: /sys/firmware came back writable when it shared /proc/acpi's source).</summary>
    public static string MaskedDirSource(string emptyDir, string path) => Path.Combine(emptyDir, path.Trim('/').Replace('/', '-'));

    /// <summary>(key, host path) for each mount the dump may have declared external
    /// (<see cref="DumpPlan.ExternalMounts"/>): the new spec's bind mounts with their sources, and
    /// its masked paths, which the shim hides with /dev/null when they are files and the dump
    /// declared under <see cref="DumpPlan.MaskedDirKey"/> when they are directories: those get
    /// an empty directory of their own under <paramref name="emptyDir"/> (<see cref="MaskedDirSource"/>;
    /// the restored mount keeps the dumped one's read-only flag); and each tmpfs whose content the
    /// daemon captured (<see cref="TmpfsContent"/>), under <see cref="DumpPlan.TmpfsKey"/>, by the
    /// fresh tmpfs StartContainer mounts at its <paramref name="tmpfs"/> host directory. A
    /// key the images do not name is ignored by CRIU.</summary>
    public static IReadOnlyList<(string Key, string HostPath)> ExternalMounts(Spec spec, string? emptyDir = null,
        IReadOnlyList<(string Path, string HostDir)>? tmpfs = null)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var d in DefaultDevices.Names.Select(n => "/dev/" + n))
            if (spec.Linux?.Devices?.Any(x => "/" + x.Path.Trim('/') == d) != true) result[d] = d;
        foreach (var p in spec.Linux?.MaskedPaths ?? [])
        {
            result["/" + p.Trim('/')] = "/dev/null";
            if (emptyDir is not null) result[DumpPlan.MaskedDirKey(p)] = MaskedDirSource(emptyDir, p);
        }
        foreach (var m in spec.Mounts ?? [])
            if (DumpPlan.IsBind(m) && !string.IsNullOrEmpty(m.Source)) result["/" + m.Destination.Trim('/')] = m.Source;
        foreach (var (path, hostDir) in tmpfs ?? []) result[DumpPlan.TmpfsKey(path)] = hostDir;
        return [.. result.Select(kv => (kv.Key, kv.Value))];
    }
}
