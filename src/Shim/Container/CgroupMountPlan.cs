using CriRuntime.Cgroups;
using L = CriRuntime.Shim.Kernel.Abi;

namespace CriRuntime.Shim.Container;

/// <summary>The steps of an OCI "cgroup" mount (/sys/fs/cgroup): the container sees its own
/// cgroup as the root of each hierarchy, so the JVM, Go, .NET and nginx read their own limits.
///
/// Every cgroup filesystem here is mounted afresh by the init inside the container's cgroup
/// namespace, which it made after the supervisor moved it into the container's cgroup: the
/// kernel roots such a mount at the namespace's cgroup, so neither the host's tree nor other
/// pods show, and nothing depends on host paths (a container in a user namespace can do it too,
/// as its cgroup namespace is owned by that user namespace). This is runc's behaviour with a
/// cgroup namespace (libcontainer/rootfs_linux.go mountCgroupV1/V2), laid out like the host:
///   v2:     cgroup2 at the destination;
///   v1:     a tmpfs at the destination, in it a directory per v1 hierarchy named like the
///           host's mount point ("cpu,cpuacct", "memory") with that hierarchy mounted on it
///           (the mount options name its controllers, which selects the existing hierarchy),
///           and a symlink per co-mounted controller ("cpu" -> "cpu,cpuacct");
///   hybrid: v1's, plus the cgroup2 mount in a directory named like the host's ("unified").
/// "ro" mounts each hierarchy read-only and, once its directories and links are made, remounts
/// the tmpfs read-only too. Named hierarchies (name=systemd) carry no controller and the
/// container is not placed in them, so they are left out rather than shown from the host's root.</summary>
public static class CgroupMountPlan
{
    public static void Add(List<PlanStep> steps, string rootfs, string dest, MountOptions options, CgroupLayout layout)
    {
        var flags = options.Flags;
        if (layout.Mode == CgroupMode.V2)
        {
            steps.Add(new MkdirAllStep(rootfs, dest));
            steps.Add(new MountStep("cgroup2", dest, "cgroup2", flags, null, rootfs));
            return;
        }

        var readOnly = (flags & L.MS_RDONLY) != 0;
        var writable = flags & ~L.MS_RDONLY;
        steps.Add(new MkdirAllStep(rootfs, dest));
        steps.Add(new MountStep("tmpfs", dest, "tmpfs", writable, "mode=755", rootfs));
        foreach (var h in Hierarchies(layout))
        {
            var dir = $"{dest}/{h.Directory}";
            steps.Add(new MkdirAllStep(rootfs, dir));
            steps.Add(new MountStep("cgroup", dir, "cgroup", flags, string.Join(',', h.Controllers), rootfs));
            foreach (var c in h.Controllers)
                if (c != h.Directory) steps.Add(new SymlinkStep(h.Directory, $"{dest}/{c}", rootfs));
        }
        if (layout.Mode == CgroupMode.Hybrid && layout.UnifiedMount is { } unified)
        {
            var dir = $"{dest}/{Path.GetFileName(unified.TrimEnd('/'))}";
            steps.Add(new MkdirAllStep(rootfs, dir));
            steps.Add(new MountStep("cgroup2", dir, "cgroup2", flags, null, rootfs));
        }
        if (readOnly) steps.Add(new MountStep(null, dest, null, L.MS_BIND | L.MS_REMOUNT | flags, null, rootfs));
    }

    /// <summary>Each v1 hierarchy once: the base name of its host mount point and its
    /// controllers, in a stable order.</summary>
    public static IReadOnlyList<(string Directory, IReadOnlyList<string> Controllers)> Hierarchies(CgroupLayout layout) =>
        [.. layout.V1Mounts
            .GroupBy(kv => kv.Value, StringComparer.Ordinal)
            .Select(g => (Directory: Path.GetFileName(g.Key.TrimEnd('/')), Controllers: (IReadOnlyList<string>)[.. g.Select(kv => kv.Key).Order(StringComparer.Ordinal)]))
            .OrderBy(h => h.Directory, StringComparer.Ordinal)];
}
