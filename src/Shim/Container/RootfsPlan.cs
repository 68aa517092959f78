using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>One step of container setup. Most steps are one system call; a few look at the
/// filesystem first (a bind target must be a file or a directory like its source, a masked path
/// may be missing). <see cref="ToString"/> is the readable form tests and logs use.</summary>
public abstract record PlanStep
{
    public abstract void Apply(IKernel k);
}

/// <param name="Root">Set when <paramref name="Target"/> lies in the rootfs: it is then resolved
/// with <see cref="SecurePath"/> when the step runs.</param>
public sealed record MountStep(string? Source, string Target, string? FsType, ulong Flags, string? Data, string? Root = null) : PlanStep
{
    public override void Apply(IKernel k) => k.Mount(Source, SecurePath.InRoot(k, Root, Target), FsType, Flags, Data);
    public override string ToString() => $"mount {Source ?? "none"} {Target} {FsType ?? "-"} {MountFlags.Format(Flags)}{(string.IsNullOrEmpty(Data) ? "" : " " + Data)}";
}

/// <summary>Attaches a detached mount the supervisor made (<see cref="UserNamespaces"/>) at
/// <see cref="Target"/> ("." = the working directory); <see cref="Enter"/> then makes it the
/// working directory (it hides the directory it covers).</summary>
public sealed record AttachTreeStep(FdHandle Tree, string What, string Target, string? Root = null, bool Enter = false) : PlanStep
{
    public override void Apply(IKernel k)
    {
        k.MoveMount(Tree, Target == "." ? "." : SecurePath.InRoot(k, Root, Target));
        if (Enter) k.Fchdir(Tree);
    }
    public override string ToString() => $"move_mount {What} {Target}{(Enter ? "; fchdir" : "")}";
}

public sealed record MountSetattrStep(string Target, ulong Set, ulong Clear, string? Root = null) : PlanStep
{
    public override void Apply(IKernel k) => k.MountSetattr(SecurePath.InRoot(k, Root, Target), Set, Clear, recursive: true);
    public override string ToString() => $"mount_setattr {Target} set=0x{Set:x} clr=0x{Clear:x} recursive";
}

/// <summary>mkdir -p, but only below <see cref="Root"/>: the directories above it exist already.</summary>
public sealed record MkdirAllStep(string Root, string Path, uint Mode = 0x1ed /* 0755 */) : PlanStep
{
    public override void Apply(IKernel k)
    {
        var rel = System.IO.Path.GetRelativePath(Root, SecurePath.InRoot(k, Root, Path));
        var cur = Root;
        if (rel == ".") return;
        foreach (var part in rel.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            cur = System.IO.Path.Combine(cur, part);
            if (k.Stat(cur) == FileKind.Missing) k.Mkdir(cur, Mode);
        }
    }
    public override string ToString() => $"mkdir -p {Path}";
}

/// <summary>A bind mount needs a target of the same kind as its source: a directory for a
/// directory, an empty file for anything else (files, sockets, device nodes).</summary>
/// <param name="SourceIsDirectory">Known already (the source was cloned by the supervisor and may
/// not be reachable from here): no stat of the source.</param>
public sealed record BindTargetStep(string Root, string Source, string Target, bool? SourceIsDirectory = null) : PlanStep
{
    public override void Apply(IKernel k)
    {
        var sourceKind = SourceIsDirectory switch { true => FileKind.Directory, false => FileKind.File, null => k.Stat(Source) };
        if (sourceKind == FileKind.Missing) throw new KernelException("stat", Source, Errno.ENOENT);
        if (sourceKind == FileKind.Directory) { new MkdirAllStep(Root, Target).Apply(k); return; }
        new MkdirAllStep(Root, System.IO.Path.GetDirectoryName(Target)!).Apply(k);
        var target = SecurePath.InRoot(k, Root, Target);
        if (k.Stat(target) == FileKind.Missing) k.CreateFile(target, 0x1a4 /* 0644 */);
    }
    public override string ToString() => $"bind-target {Source} -> {Target}";
}

public sealed record SymlinkStep(string Target, string LinkPath, string? Root = null) : PlanStep
{
    public override void Apply(IKernel k)
    {
        var link = SecurePath.InRoot(k, Root, LinkPath);
        if (k.Stat(link) == FileKind.Missing && k.ReadLink(link) is null) k.Symlink(Target, link);
    }
    public override string ToString() => $"symlink {LinkPath} -> {Target}";
}

public sealed record MknodStep(string Path, uint Mode, ulong Dev, uint? Uid, uint? Gid, string? Root = null) : PlanStep
{
    public override void Apply(IKernel k)
    {
        var path = SecurePath.InRoot(k, Root, Path);
        k.Mknod(path, Mode, Dev);
        if (Uid is not null || Gid is not null) k.Chown(path, Uid ?? 0, Gid ?? 0);
    }
    public override string ToString() => $"mknod {Path} {Convert.ToString(Mode, 8)} {Dev}";
}

public sealed record ChdirStep(string Path) : PlanStep
{
    public override void Apply(IKernel k) => k.Chdir(Path);
    public override string ToString() => $"chdir {Path}";
}

public sealed record PivotRootStep : PlanStep
{
    // pivot_root(".", ".") stacks the old root on top of the new one at the same place, so no
    // directory has to be created inside the image for it (runc and crun do the same); the old
    // root is then made slave so unmounting it cannot propagate to the host, and lazily detached.
    public override void Apply(IKernel k)
    {
        k.PivotRoot(".", ".");
        k.Mount(null, ".", null, L.MS_SLAVE | L.MS_REC, null);
        k.Umount2(".", L.MNT_DETACH);
        k.Chdir("/");
    }
    public override string ToString() => "pivot_root . . ; umount2 . MNT_DETACH";
}

/// <summary>Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
/// A path the image does not have needs no hiding.</summary>
public sealed record MaskPathStep(string Path) : PlanStep
{
    public override void Apply(IKernel k)
    {
        switch (k.Stat(Path))
        {
            case FileKind.Missing: return;
            case FileKind.Directory: k.Mount("tmpfs", Path, "tmpfs", L.MS_RDONLY, null); return;
            default: k.Mount("/dev/null", Path, null, L.MS_BIND, null); return;
        }
    }
    public override string ToString() => $"mask {Path}";
}

/// <summary>Makes a path read-only by bind-mounting it onto itself and remounting the bind
/// read-only. nosuid/nodev/noexec are added too: every readonlyPath the CRI asks for lives in
/// /proc, which has them, and a bind remount that omitted them would drop them.</summary>
public sealed record ReadonlyPathStep(string Path) : PlanStep
{
    public override void Apply(IKernel k)
    {
        if (k.Stat(Path) == FileKind.Missing) return;
        k.Mount(Path, Path, null, L.MS_BIND | L.MS_REC, null);
        k.Mount(null, Path, null, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, null);
    }
    public override string ToString() => $"readonly {Path}";
}

public sealed record SysctlStep(string Key, string Value) : PlanStep
{
    public override void Apply(IKernel k) => k.WriteFile("/proc/sys/" + Key.Replace('.', '/'), Value);
    public override string ToString() => $"sysctl {Key}={Value}";
}

public sealed record HostnameStep(string Name) : PlanStep
{
    public override void Apply(IKernel k) => k.SetHostname(Name);
    public override string ToString() => $"sethostname {Name}";
}

public sealed record DomainnameStep(string Name) : PlanStep
{
    public override void Apply(IKernel k) => k.SetDomainname(Name);
    public override string ToString() => $"setdomainname {Name}";
}

/// <summary>Builds the setup plan of a container's init from its spec: everything between
/// "in fresh namespaces" and "waiting for start". Pure: reads nothing but the spec, so it is
/// unit-tested as data; the steps then run against <see cref="IKernel"/>.</summary>
public static class RootfsPlan
{
    /// <param name="delegated">For a container in a user namespace: detached mounts the supervisor
    /// made as host root (<see cref="UserNamespaces"/>). The idmapped rootfs is attached over the
    /// working directory (the rootfs) instead of a bind mount of the rootfs onto itself, so the
    /// image's files owned by host root are owned by the namespace's root, and what the container
    /// writes lands on disk with the ids it had inside; <paramref name="rootfs"/> is then
    /// <see cref="UserNamespaces.InitRootfs"/>. Bind mounts attach their clones.</param>
    /// <param name="cgroups">The host's cgroup layout (<see cref="CgroupLayout.Detect"/>), needed
    /// when the spec has a "cgroup" mount (<see cref="CgroupMountPlan"/>).</param>
    public static IReadOnlyList<PlanStep> Build(Spec spec, string rootfs, DelegatedMounts? delegated = null, CgroupLayout? cgroups = null)
    {
        var linux = spec.Linux ?? new Oci.Linux();
        var steps = new List<PlanStep>();
        bool Has(string ns) => linux.Namespaces?.Any(n => n.Type == ns) == true;

        if (Has("mount"))
        {
            // Nothing we mount may propagate back to the host: make the whole tree slave (or what
            // the spec asks) before the first mount.
            steps.Add(new MountStep(null, "/", null, Propagation(linux.RootfsPropagation) ?? (L.MS_SLAVE | L.MS_REC), null));
            // pivot_root needs the new root to be a mount point of its own.
            steps.Add(delegated?.Root is { } root
                ? new AttachTreeStep(root, "idmapped-rootfs", ".", Enter: true)
                : new MountStep(rootfs, rootfs, null, L.MS_BIND | L.MS_REC, null));

            var mounts = spec.Mounts ?? [];
            for (var i = 0; i < mounts.Count; i++)
            {
                if (mounts[i].Type == "cgroup")
                {
                    // Mounted in the container's cgroup namespace, so that / is its own cgroup.
                    if (!Has("cgroup")) throw new InvalidDataException($"mounts: the cgroup mount on {mounts[i].Destination} needs a cgroup namespace in linux.namespaces");
                    CgroupMountPlan.Add(steps, rootfs, InRoot(rootfs, mounts[i].Destination), MountOptions.Parse(mounts[i].Options),
                        cgroups ?? throw new ArgumentNullException(nameof(cgroups), "a cgroup mount needs the host's cgroup layout"));
                    continue;
                }
                AddMount(steps, rootfs, mounts[i], delegated?.Binds.TryGetValue(i, out var b) == true ? b : null);
            }

            if (mounts.Any(m => Clean(m.Destination) == "/dev")) AddDev(steps, rootfs, linux);

            steps.Add(new ChdirStep(rootfs));
            steps.Add(new PivotRootStep());
            // rootfsPropagation "shared" etc. applies to the container's own tree once pivoted.
            if (Propagation(linux.RootfsPropagation) is { } prop && (prop & (L.MS_SHARED | L.MS_UNBINDABLE)) != 0)
                steps.Add(new MountStep(null, "/", null, prop, null));
        }

        if (Has("uts") && !string.IsNullOrEmpty(spec.Hostname)) steps.Add(new HostnameStep(spec.Hostname));
        if (Has("uts") && !string.IsNullOrEmpty(spec.Domainname)) steps.Add(new DomainnameStep(spec.Domainname));
        foreach (var (key, value) in linux.Sysctl ?? new Dictionary<string, string>())
            steps.Add(new SysctlStep(key, value));

        if (Has("mount"))
        {
            // Read-only and masked paths come after sysctls, which write below /proc/sys.
            foreach (var p in linux.ReadonlyPaths ?? []) steps.Add(new ReadonlyPathStep(Clean(p)));
            foreach (var p in linux.MaskedPaths ?? []) steps.Add(new MaskPathStep(Clean(p)));
            if (spec.Root?.Readonly == true)
                steps.Add(new MountStep(null, "/", null, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY, null));
        }
        return steps;
    }

    private static void AddMount(List<PlanStep> steps, string rootfs, Mount m, (FdHandle Tree, bool IsDirectory)? clone)
    {
        var dest = InRoot(rootfs, m.Destination);
        var o = MountOptions.Parse(m.Options);
        if (o.IsBind || m.Type == "bind")
        {
            if (MountSources.BindSourceProblem(m.Source) is { } why)
                throw new InvalidDataException($"mounts: source of the bind mount on {m.Destination}: {why}");
            var source = m.Source!;
            var flags = o.Flags | L.MS_BIND;
            if (clone is { } c)
            {
                steps.Add(new BindTargetStep(rootfs, source, dest, c.IsDirectory));
                steps.Add(new AttachTreeStep(c.Tree, source, dest, rootfs));
            }
            else
            {
                steps.Add(new BindTargetStep(rootfs, source, dest));
                steps.Add(new MountStep(source, dest, null, flags & (L.MS_BIND | L.MS_REC), null, rootfs));
            }
            // A bind mount ignores every flag but MS_BIND|MS_REC; the others need a remount.
            var extra = flags & ~(L.MS_BIND | L.MS_REC | L.MS_REMOUNT);
            if (extra != 0) steps.Add(new MountStep(null, dest, null, L.MS_BIND | L.MS_REMOUNT | extra, null, rootfs));
        }
        else
        {
            steps.Add(new MkdirAllStep(rootfs, dest));
            steps.Add(new MountStep(m.Source ?? m.Type, dest, m.Type, o.Flags, o.Data, rootfs));
        }
        if (o.Propagation != 0) steps.Add(new MountStep(null, dest, null, o.Propagation, null, rootfs));
        if (o.RecursiveSet != 0 || o.RecursiveClear != 0) steps.Add(new MountSetattrStep(dest, o.RecursiveSet, o.RecursiveClear, rootfs));
    }

    private static void AddDev(List<PlanStep> steps, string rootfs, Oci.Linux linux)
    {
        var dev = InRoot(rootfs, "/dev");
        foreach (var d in Oci.DefaultDevices.Names)
        {
            if (linux.Devices?.Any(x => Clean(x.Path) == "/dev/" + d) == true) continue;
            steps.Add(new BindTargetStep(rootfs, "/dev/" + d, $"{dev}/{d}"));
            steps.Add(new MountStep("/dev/" + d, $"{dev}/{d}", null, L.MS_BIND, null, rootfs));
        }
        foreach (var d in linux.Devices ?? [])
        {
            var (mode, number) = Oci.DeviceNodes.Of(d);
            var path = InRoot(rootfs, d.Path);
            steps.Add(new MkdirAllStep(rootfs, Path.GetDirectoryName(path)!));
            steps.Add(new MknodStep(path, mode, number, d.Uid, d.Gid, rootfs));
        }
        steps.Add(new SymlinkStep("/proc/self/fd", $"{dev}/fd", rootfs));
        steps.Add(new SymlinkStep("/proc/self/fd/0", $"{dev}/stdin", rootfs));
        steps.Add(new SymlinkStep("/proc/self/fd/1", $"{dev}/stdout", rootfs));
        steps.Add(new SymlinkStep("/proc/self/fd/2", $"{dev}/stderr", rootfs));
        steps.Add(new SymlinkStep("pts/ptmx", $"{dev}/ptmx", rootfs));
    }

    private static ulong? Propagation(string? name) =>
        string.IsNullOrEmpty(name) ? null : MountOptions.Parse([name]).Propagation is var p && p != 0 ? p
            : throw new InvalidDataException($"linux.rootfsPropagation: unknown value \"{name}\"");

    /// <summary>Normalises a container path ("/a/../b/" → "/b"), never above "/".</summary>
    public static string Clean(string path)
    {
        var parts = new List<string>();
        foreach (var p in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (p == ".") continue;
            if (p == "..") { if (parts.Count > 0) parts.RemoveAt(parts.Count - 1); continue; }
            parts.Add(p);
        }
        return "/" + string.Join('/', parts);
    }

    /// <summary>A container path under the rootfs. Lexical only: ".." cannot climb out, but a
    /// symlink inside the image can still point elsewhere (runc resolves with securejoin; not yet here).</summary>
    public static string InRoot(string rootfs, string path)
    {
        var c = Clean(path);
        return c == "/" ? rootfs : rootfs.TrimEnd('/') + c;
    }
}
