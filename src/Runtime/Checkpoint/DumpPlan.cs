using System.Globalization;
using CriRuntime.Oci;

namespace CriRuntime.Checkpoint;

/// <summary>One line of /proc/PID/mountinfo, as far as the dump needs it: the mount point (as the
/// process sees it, relative to its root), the path inside the mounted file system, its type, and
/// its superblock's options ("rw,size=65536k,mode=755").</summary>
public sealed record MountInfo(string MountPoint, string Root, string FsType, string SuperOptions = "");

/// <summary>The arguments of `criu dump` for a running container, decided from its spec and its
/// init's mount table (pure: unit-tested without CRIU). Modelled on what runc's checkpoint asks
/// CRIU for: the container's own mounts are dumped, but a mount whose source lives outside the
/// container (bind mounts, /dev/null over masked files) and a namespace the pod shares are
/// declared external, to be supplied again by whoever restores.</summary>
public static class DumpPlan
{
    /// <summary>The key of the pod's network namespace in the images (runc's name for it).</summary>
    public const string NetNsKey = "extRootNetNS";
    public const string PidNsKey = "extRootPidNS";

    /// <summary>File systems CRIU re-creates from the images (their content, if any, is dumped).</summary>
    private static readonly HashSet<string> Internal = new(StringComparer.Ordinal)
        { "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2" };

    /// <param name="nsInode">the inode of the container's namespace of a kind ("net", "pid").</param>
    /// <param name="freezerDir">the container's freezer cgroup (v1 freezer or cgroup2 directory)
    /// when the caller froze it (CheckpointPod): CRIU then seizes the frozen tasks through it and
    /// leaves it frozen, as it found it, for the caller to thaw.</param>
    /// <param name="actionScript">CRIU's action script (<see cref="PostDumpHook"/>): run at post-dump,
    /// before the tasks are resumed.</param>
    /// <param name="stream">images go to <see cref="ImageStreamer"/>'s socket in
    /// <paramref name="imagesDir"/> (`--stream`), which CRIU names by joining the two, so the
    /// directory is given relative to <paramref name="workDir"/> (CRIU's working directory):
    /// a socket address holds 107 bytes.</param>
    /// <param name="isDirectory">whether a mount point of the container is a directory (read
    /// through /proc/PID/root): a masked directory a restore hid with a bind mount of an empty
    /// directory is declared external under <see cref="MaskedDirKey"/> again.</param>
    /// <param name="pageServer">a lazy migration's dump (`--lazy-pages`): the memory pages are not
    /// written into the images; after post-dump CRIU serves them on this address and port (plain
    /// TCP) to the target's `criu lazy-pages`, and exits once it has fetched them all.</param>
    /// <param name="networkLockedOutside">a migration's dump: the pod's links are already down (it
    /// keeps its address: the migration's network lock) or its connections are closed at the
    /// restore (a new address), so CRIU's own lock (nftables, set and lifted inside the frozen
    /// time) is skipped.</param>
    public static IReadOnlyList<string> Args(int pid, string imagesDir, string workDir, string rootfs, Spec spec,
        IReadOnlyList<MountInfo> mounts, Func<string, ulong?> nsInode, string? freezerDir = null, string? actionScript = null,
        bool stream = false, (string Address, int Port)? pageServer = null, Func<string, bool>? isDirectory = null, bool networkLockedOutside = false)
    {
        if (stream) imagesDir = Path.GetRelativePath(workDir, imagesDir);
        var args = new List<string>
        {
            "dump", "--tree", pid.ToString(CultureInfo.InvariantCulture),
            "--images-dir", imagesDir, "--work-dir", workDir, "--log-file", "dump.log", "-v4",
            "--root", rootfs,
            // The container goes on running: CRIU only freezes it while it copies.
            "--leave-running",
            // The connection lock while the tasks are seized: nftables is libnftables inside CRIU;
            // the iptables default execs iptables-restore at lock and at unlock (measured: ~60 ms
            // of the frozen time, of 160-240). CRIU unlocks before it returns (leave-running).
            "--tcp-established", "--network-lock", networkLockedOutside ? "skip" : "nftables", "--file-locks", "--link-remap",
            "--manage-cgroups",
        };
        if (stream) args.Add("--stream");
        if (pageServer is { } ps)
            args.AddRange(["--lazy-pages", "--address", ps.Address, "--port", ps.Port.ToString(CultureInfo.InvariantCulture)]);
        if (freezerDir is not null) args.AddRange(["--freeze-cgroup", freezerDir]);
        if (actionScript is not null) args.AddRange(["--action-script", actionScript]);
        if (spec.Process?.Terminal == true) args.Add("--shell-job");
        foreach (var (point, key) in ExternalMounts(spec, mounts, isDirectory))
            args.AddRange(["--external", $"mnt[{point}]:{key}"]);
        foreach (var ns in spec.Linux?.Namespaces ?? [])
        {
            if (string.IsNullOrEmpty(ns.Path)) continue;
            var (kind, key) = ns.Type switch { "network" => ("net", NetNsKey), "pid" => ("pid", PidNsKey), _ => ("", "") };
            if (kind.Length == 0 || nsInode(kind) is not { } inode) continue;
            args.AddRange(["--external", $"{kind}[{inode}]:{key}"]);
        }
        return args;
    }

    /// <summary>The key under which a masked directory's mount is declared external: a restore
    /// supplies an empty directory for it (<see cref="RestorePlan.ExternalMounts"/>).</summary>
    public static string MaskedDirKey(string path) => "masked-dir/" + path.Trim('/');

    /// <summary>The key under which a tmpfs of the container's own is declared external: its
    /// content is captured by the daemon while CRIU holds the tasks frozen (<see cref="TmpfsContent"/>)
    /// and a restore supplies a fresh tmpfs with that content.</summary>
    public static string TmpfsKey(string path) => "tmpfs/" + path.Trim('/');

    /// <summary>Mount points to declare external, with their keys: every bind destination of the
    /// spec, and every other mount (not the root) of a file system CRIU cannot re-create by itself,
    /// each under its own mount point; and the empty read-only tmpfs over each masked directory
    /// (the shim's MaskPathStep), under <see cref="MaskedDirKey"/>. CRIU would otherwise dump and
    /// restore that empty tmpfs as a file system of the container's own, through `tar --gzip`: a
    /// tar and a gzip process each way, 16-30 ms per mount here, inside the frozen time (a dump
    /// of the default masked paths has two: /proc/acpi and /sys/firmware) and the restore's.
    /// Every other tmpfs mounted at its root (/dev, /dev/shm, v1's /sys/fs/cgroup) is declared
    /// under <see cref="TmpfsKey"/> for the same reason: the daemon captures its content itself,
    /// in-process, while the tasks are frozen (<see cref="TmpfsContent"/>).</summary>
    public static IReadOnlyList<(string Point, string Key)> ExternalMounts(Spec spec, IReadOnlyList<MountInfo> mounts, Func<string, bool>? isDirectory = null)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var masked = new HashSet<string>((spec.Linux?.MaskedPaths ?? []).Select(Normalize), StringComparer.Ordinal);
        foreach (var m in spec.Mounts ?? [])
            if (IsBind(m)) result[Normalize(m.Destination)] = Normalize(m.Destination);
        foreach (var m in mounts)
        {
            if (m.MountPoint == "/" || result.ContainsKey(m.MountPoint)) continue;
            if (masked.Contains(m.MountPoint) && (m.FsType == "tmpfs" || isDirectory?.Invoke(m.MountPoint) == true))
                result[m.MountPoint] = MaskedDirKey(m.MountPoint);
            else if (m.FsType == "tmpfs" && m.Root == "/")
                result[m.MountPoint] = TmpfsKey(m.MountPoint);
            else if (!Internal.Contains(m.FsType))
                result[m.MountPoint] = m.MountPoint;
        }
        return [.. result.Select(kv => (kv.Key, kv.Value))];
    }

    /// <summary>The directory CRIU's --freeze-cgroup wants for the cgroup at <paramref name="path"/>
    /// (relative to the hierarchy roots): the v1 freezer's where it is mounted (the freezer our
    /// cgroup managers use then), else the cgroup2 one.</summary>
    public static string FreezerDir(Cgroups.CgroupLayout layout, string path) =>
        layout.V1Mounts.TryGetValue("freezer", out var v1) ? Path.Combine(v1, path.TrimStart('/'))
        : Path.Combine(layout.UnifiedMount ?? throw new InvalidOperationException("no freezer: neither a v1 freezer nor a cgroup2 mount"), path.TrimStart('/'));

    public static bool IsBind(Mount m) =>
        m.Type == "bind" || (m.Options?.Any(o => o is "bind" or "rbind") ?? false);

    private static string Normalize(string p) => "/" + p.Trim('/');

    /// <summary>Parses /proc/PID/mountinfo ("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw").
    /// Octal escapes (\040 for a space) are decoded.</summary>
    public static IReadOnlyList<MountInfo> ParseMountInfo(string text)
    {
        var list = new List<MountInfo>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-");
            if (fields.Length < 7 || dash < 6 || dash + 1 >= fields.Length) continue;
            list.Add(new MountInfo(Unescape(fields[4]), Unescape(fields[3]), fields[dash + 1], dash + 3 < fields.Length ? fields[dash + 3] : ""));
        }
        return list;
    }

    private static string Unescape(string s) => Cgroups.CgroupLayout.Unescape(s);
}
