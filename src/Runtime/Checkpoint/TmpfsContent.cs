using System.Formats.Tar;
using System.Text.Json;
using System.Text.RegularExpressions;
using CriRuntime.Images.Snapshots;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Checkpoint;

/// <summary>tmpfs.json: the container's own tmpfs mounts (/dev, /dev/shm, v1's /sys/fs/cgroup),
/// each with its content in tmpfs-N.tar (N its index here).</summary>
public sealed record TmpfsDump
{
    public List<TmpfsMount> Mounts { get; init; } = [];
}

/// <summary>One tmpfs of <see cref="TmpfsDump"/>: where the container had it, and its superblock's
/// options (only those <see cref="TmpfsContent.SafeOptions"/> keeps: size, inodes, mode, owner).</summary>
public sealed record TmpfsMount
{
    public string Path { get; init; } = "";
    public string Options { get; init; } = "";
    /// <summary>The pod's /dev/shm, bound in (<see cref="Pods.PodShm"/>): restored into the new
    /// pod's, not as a tmpfs of the container's own.</summary>
    public bool Pod { get; init; }
}

/// <summary>A device node a restored container's fresh tmpfs gets: from the new container's spec,
/// never from the archive (relative to the tmpfs's root).</summary>
public sealed record TmpfsDevice(string Path, uint Mode, ulong Dev, uint? Uid, uint? Gid);

/// <summary>What StartContainer mounts for a container restored from a checkpoint, before CRIU
/// binds it in (bundle/restore-tmpfs.json): one fresh tmpfs per captured one, at
/// <see cref="Dir"/>, filled from <see cref="Tar"/>, with the new spec's devices under it.
/// <see cref="Pod"/>: <see cref="Dir"/> is the new pod's /dev/shm, filled (not mounted) when it
/// is still empty.</summary>
public sealed record TmpfsRestore(string Dir, string Options, string Tar, List<TmpfsDevice> Devices, bool Pod = false);

/// <summary>The content of a container's own tmpfs mounts, captured by the daemon in-process while
/// CRIU holds the tasks frozen (at post-dump, with the writable layer) and put into a fresh tmpfs
/// before a restore. CRIU would dump each through `tar --create --gzip` (a tar and a gzip process
/// per mount, 14-16 ms each here, inside the frozen time) and restore it through `tar --extract
/// --gzip` inside the restore; declared external under <see cref="DumpPlan.TmpfsKey"/>, CRIU binds
/// the fresh tmpfs instead. The walk reads the mount through /proc/PID/root, never follows a
/// symlink and never descends into a mount on top of it (a mount point is kept as an empty
/// directory or file, for CRIU to mount onto); device nodes and sockets are left out: a restore
/// makes the devices the new spec lists, never one an archive names.</summary>
public static partial class TmpfsContent
{
    public const string ManifestFile = "tmpfs.json", RestoreFile = "restore-tmpfs.json", RestoreDir = "restore-tmpfs";

    /// <summary>A tmpfs content tar's name in the archive.</summary>
    public static string TarName(int index) => $"tmpfs-{index}.tar";

    [GeneratedRegex(@"^tmpfs-([0-9]{1,3})\.tar$")]
    public static partial Regex TarNamePattern();

    [GeneratedRegex(@"^(size=[0-9]{1,20}[kKmMgG%]?|nr_inodes=[0-9]{1,20}[kKmMgG]?|mode=[0-7]{1,4}|uid=[0-9]{1,10}|gid=[0-9]{1,10}|inode64|inode32|huge=(never|always|within_size|advise))$")]
    private static partial Regex SafeOption();

    /// <summary>The options of a tmpfs superblock a fresh one may be mounted with: size, inode
    /// count, mode, owner and the inode and huge-page flavours; "rw"/"ro" and anything else dropped
    /// (the restored mount's read-only flag is CRIU's, from the images).</summary>
    public static string SafeOptions(string options) =>
        string.Join(',', options.Split(',', StringSplitOptions.RemoveEmptyEntries).Where(o => SafeOption().IsMatch(o)));

    /// <summary>Whether every option is one <see cref="SafeOptions"/> keeps (an archive's are checked).</summary>
    public static bool AreSafe(string options) =>
        options.Split(',', StringSplitOptions.RemoveEmptyEntries).All(o => SafeOption().IsMatch(o));

    /// <summary>The tmpfs mounts a dump declared external under <see cref="DumpPlan.TmpfsKey"/>.</summary>
    public static IReadOnlyList<MountInfo> Declared(IReadOnlyList<(string Point, string Key)> external, IReadOnlyList<MountInfo> mounts)
    {
        var points = external.Where(e => e.Key == DumpPlan.TmpfsKey(e.Point)).Select(e => e.Point).ToHashSet(StringComparer.Ordinal);
        return [.. mounts.Where(m => m.FsType == "tmpfs" && m.Root == "/" && points.Contains(m.MountPoint))
            .GroupBy(m => m.MountPoint, StringComparer.Ordinal).Select(g => g.Last())];
    }

    /// <summary>Writes tmpfs-N.tar into <paramref name="dir"/> for each of <paramref name="tmpfs"/>
    /// as seen under <paramref name="root"/> (/proc/PID/root), with <paramref name="mountPoints"/>
    /// (every mount point of the container now) kept as empty entries; returns the manifest.</summary>
    /// <param name="podShm">the container's /dev/shm when it is the pod's (a bind of a tmpfs
    /// root): captured too, marked <see cref="TmpfsMount.Pod"/>.</param>
    public static TmpfsDump Capture(string root, IReadOnlyList<MountInfo> tmpfs, IReadOnlyCollection<string> mountPoints, string dir, MountInfo? podShm = null)
    {
        var dump = new TmpfsDump();
        var points = mountPoints.ToHashSet(StringComparer.Ordinal);
        foreach (var (m, pod) in tmpfs.Select(m => (m, false)).Concat(podShm is null ? [] : [(podShm, true)]))
        {
            var index = dump.Mounts.Count;
            using (var fs = new FileStream(Path.Combine(dir, TarName(index)), FileMode.CreateNew, FileAccess.Write))
            using (var tar = new TarWriter(fs, TarEntryFormat.Pax, leaveOpen: false))
                Walk(tar, root + m.MountPoint, m.MountPoint, points);
            dump.Mounts.Add(new TmpfsMount { Path = m.MountPoint, Options = SafeOptions(m.SuperOptions), Pod = pod });
        }
        return dump;
    }

    /// <summary>The container's /dev/shm when it is a bind of the pod's shm tmpfs (the spec binds
    /// it there and the mount is a tmpfs root), else null.</summary>
    public static MountInfo? PodShm(Oci.Spec spec, IReadOnlyList<MountInfo> mounts) =>
        (spec.Mounts ?? []).Any(m => DumpPlan.IsBind(m) && "/" + m.Destination.Trim('/') == "/dev/shm")
            ? mounts.LastOrDefault(m => m.MountPoint == "/dev/shm" && m.FsType == "tmpfs" && m.Root == "/")
            : null;

    private static void Walk(TarWriter tar, string top, string mountPoint, HashSet<string> points)
    {
        var pending = new Stack<string>();
        pending.Push("");
        while (pending.Count > 0)
        {
            var rel = pending.Pop();
            var dir = rel.Length == 0 ? top : Path.Combine(top, rel);
            foreach (var entry in new DirectoryInfo(dir).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                var name = rel.Length == 0 ? entry.Name : $"{rel}/{entry.Name}";
                var isDir = entry is DirectoryInfo { LinkTarget: null };
                if (points.Contains($"{mountPoint.TrimEnd('/')}/{name}"))
                {
                    // Something is mounted here: what CRIU needs is the point to mount onto.
                    tar.WriteEntry(isDir
                        ? new PaxTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)0x1ed }
                        : new PaxTarEntry(TarEntryType.RegularFile, name) { Mode = (UnixFileMode)0x1a4 });
                    continue;
                }
                var type = Libc.DeviceInfo(entry.FullName, followSymlinks: false)?.Mode & 0xF000;
                if (type is null or 0x2000 or 0x6000 or 0xC000) continue; // vanished; char, block device; socket
                tar.WriteEntry(entry.FullName, name);
                if (isDir) pending.Push(name);
            }
        }
    }

    /// <summary>The archive's tmpfs.json and tmpfs-N.tar, checked as hostile input: every path
    /// absolute without "." or "..", each once, options only those <see cref="SafeOptions"/>
    /// keeps, a tar for every mount and no tar without one.</summary>
    public static TmpfsDump Validate(TmpfsDump dump, IReadOnlySet<int> tars)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < dump.Mounts.Count; i++)
        {
            var m = dump.Mounts[i];
            var parts = m.Path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            if (!m.Path.StartsWith('/') || parts.Length == 0 || parts.Any(p => p is "." or ".."))
                throw new InvalidDataException($"checkpoint archive: {ManifestFile}: mounts[{i}].path \"{m.Path}\" is not an absolute path inside the container");
            if (!seen.Add("/" + string.Join('/', parts)))
                throw new InvalidDataException($"checkpoint archive: {ManifestFile}: mounts[{i}].path \"{m.Path}\" appears twice");
            if (!AreSafe(m.Options))
                throw new InvalidDataException($"checkpoint archive: {ManifestFile}: mounts[{i}].options \"{m.Options}\": only size, nr_inodes, mode, uid, gid, inode64, inode32 and huge are allowed");
            if (!tars.Contains(i)) throw new InvalidDataException($"checkpoint archive: {TarName(i)} is missing");
        }
        if (tars.FirstOrDefault(t => t >= dump.Mounts.Count, -1) is var extra and >= 0)
            throw new InvalidDataException($"checkpoint archive: {TarName(extra)} has no mount in {ManifestFile}");
        return dump;
    }

    /// <summary>Refuses a tmpfs-N.tar with an entry a capture never writes: an absolute name or one
    /// with "..", a hard link, a device node (a restore makes only the new spec's). The extraction
    /// at StartContainer checks names and links again; this makes CreateContainer say it.</summary>
    public static void CheckTar(string path)
    {
        using var fs = File.OpenRead(path);
        using var tar = new TarReader(fs);
        var name = Path.GetFileName(path);
        try
        {
            while (tar.GetNextEntry() is { } e)
            {
                if (e.EntryType is TarEntryType.GlobalExtendedAttributes) continue;
                if (e.Name.StartsWith('/') || e.Name.Split('/').Any(p => p == ".."))
                    throw new InvalidDataException($"checkpoint archive: {name}: entry \"{e.Name}\": not a path inside the tmpfs");
                if (e.EntryType is not (TarEntryType.Directory or TarEntryType.RegularFile or TarEntryType.V7RegularFile
                    or TarEntryType.ContiguousFile or TarEntryType.SymbolicLink or TarEntryType.Fifo))
                    throw new InvalidDataException($"checkpoint archive: {name}: entry \"{e.Name}\": entry type {e.EntryType} is not allowed in a tmpfs's content");
            }
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException)
        {
            throw new InvalidDataException($"checkpoint archive: {name}: {e.Message}", e);
        }
    }

    /// <summary>The fresh tmpfs mounts a restore from <paramref name="dump"/> (unpacked in
    /// <paramref name="sourceDir"/>) needs, under <paramref name="bundle"/>, each with the devices
    /// of <paramref name="spec"/> below its path (the longest path holding the device wins).
    /// The pod's /dev/shm (<see cref="TmpfsMount.Pod"/>) goes into <paramref name="podShm"/>, the
    /// new pod's, when the new spec binds that at the same path (otherwise it is left out: never
    /// into a host's /dev/shm); it has no key of its own (the spec's bind is external already).</summary>
    public static List<(string Path, TmpfsRestore Restore)> Plan(TmpfsDump dump, string sourceDir, string bundle, Oci.Spec spec, string? podShm = null)
    {
        var result = new List<(string, TmpfsRestore)>();
        var paths = dump.Mounts.Select(m => "/" + m.Path.Trim('/')).ToList();
        for (var i = 0; i < dump.Mounts.Count; i++)
        {
            if (dump.Mounts[i].Pod)
            {
                if (podShm is not null && (spec.Mounts ?? []).Any(m => DumpPlan.IsBind(m) && "/" + m.Destination.Trim('/') == paths[i] && m.Source == podShm))
                    result.Add((paths[i], new TmpfsRestore(podShm, "", Path.Combine(sourceDir, TarName(i)), [], Pod: true)));
                continue;
            }
            var devices = new List<TmpfsDevice>();
            foreach (var d in spec.Linux?.Devices ?? [])
            {
                var path = "/" + d.Path.Trim('/');
                var holder = paths.Where(p => path.StartsWith(p + "/", StringComparison.Ordinal)).OrderByDescending(p => p.Length).FirstOrDefault();
                if (holder != paths[i]) continue;
                var (mode, dev) = Oci.DeviceNodes.Of(d);
                devices.Add(new TmpfsDevice(path[(holder.Length + 1)..], mode, dev, d.Uid, d.Gid));
            }
            result.Add((paths[i], new TmpfsRestore(Path.Combine(bundle, RestoreDir, i.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                dump.Mounts[i].Options, Path.Combine(sourceDir, TarName(i)), devices)));
        }
        return result;
    }

    /// <summary>Mounts and fills each fresh tmpfs of bundle/restore-tmpfs.json (none: nothing to
    /// do); the result unmounts them again (CRIU's binds in the container keep them). A failure
    /// unmounts what was mounted. Through <paramref name="k"/>, the kernel boundary.</summary>
    public static IDisposable Mount(IHostKernel k, string bundle)
    {
        var file = Path.Combine(bundle, RestoreFile);
        Release(k, bundle); // a start a daemon crash cut short left them
        var mounted = new Mounted(k);
        if (!File.Exists(file)) return mounted;
        var plan = JsonSerializer.Deserialize(File.ReadAllBytes(file), CheckpointJson.Default.ListTmpfsRestore) ?? [];
        try
        {
            foreach (var t in plan)
            {
                if (t.Pod)
                {
                    // The new pod's /dev/shm, shared with its other containers: filled only while
                    // empty (a pod restored from one checkpoint has the same files in each
                    // container's archive; a file a running sibling has open is never replaced).
                    if (Directory.Exists(t.Dir) && !Directory.EnumerateFileSystemEntries(t.Dir).Any())
                        using (var shm = File.OpenRead(t.Tar))
                            LayerExtractor.Extract(shm, t.Dir, Path.GetFileName(t.Tar), kernel: k, whiteouts: false);
                    continue;
                }
                Directory.CreateDirectory(t.Dir);
                k.Mount("tmpfs", t.Dir, "tmpfs", 0, t.Options.Length == 0 ? null : t.Options);
                mounted.Dirs.Add(t.Dir);
                // Not a peer of the host's mounts: the container's bind of it stays its own.
                k.Mount(null, t.Dir, null, Libc.MS_PRIVATE, null);
                using (var tar = File.OpenRead(t.Tar))
                    LayerExtractor.Extract(tar, t.Dir, Path.GetFileName(t.Tar), kernel: k, whiteouts: false);
                foreach (var d in t.Devices)
                {
                    // Below directories of the tmpfs only: the archive's content may have put a
                    // symlink where the device's parent goes (/dev/net -> /etc), never followed.
                    var parts = d.Path.Split('/', StringSplitOptions.RemoveEmptyEntries);
                    var parent = LayerExtractor.EnsureParents(k, t.Dir, parts.AsSpan(0, parts.Length - 1),
                        why => $"checkpoint archive: {Path.GetFileName(t.Tar)}: device /{string.Join('/', parts)} of the new spec: {why}");
                    var path = Path.Combine(parent, parts[^1]);
                    LayerExtractor.RemoveExisting(k, path);
                    k.Mknod(path, d.Mode, d.Dev);
                    k.Chmod(path, d.Mode & 0xfff);
                    if (d.Uid is not null || d.Gid is not null) k.Chown(path, d.Uid ?? 0, d.Gid ?? 0);
                }
            }
        }
        catch
        {
            mounted.Dispose();
            throw;
        }
        return mounted;
    }

    /// <summary>Unmounts whatever <see cref="Mount"/> left mounted under <paramref name="bundle"/>
    /// (a daemon killed during a restore); nothing mounted is fine.</summary>
    public static void Release(IHostKernel k, string bundle)
    {
        var dir = Path.Combine(bundle, RestoreDir);
        if (!Directory.Exists(dir)) return;
        using var m = new Mounted(k);
        m.Dirs.AddRange(Directory.EnumerateDirectories(dir));
    }

    private sealed class Mounted(IHostKernel k) : IDisposable
    {
        public List<string> Dirs { get; } = [];

        public void Dispose()
        {
            foreach (var d in Dirs) Containers.RootfsMount.Unmount(d, k); // not mounted (any more) is fine
            Dirs.Clear();
        }
    }
}
