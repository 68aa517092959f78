using System.Globalization;
using System.Text;
using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>What a container in a user namespace needs from the host's root, and the part of
/// the supervisor ↔ init protocol that carries it. The container's root is an unprivileged
/// user on the host: it cannot idmap a mount, nor reach files below the daemon's private
/// (0700) directories. So, before "go", the supervisor sends the init (SCM_RIGHTS on the sync
/// socket) detached mounts it made as host root:
///   "rootfs" + the rootfs, idmapped to the container's user namespace (open_tree + mount_setattr
///            MOUNT_ATTR_IDMAP), attached over the init's working directory (the rootfs);
///   "bind N dir|file" + a clone of the source of the spec's mount N (a bind mount), attached
///            at its destination instead of mounting the source by path;
///   "spec JSON" the spec itself (config.json is readable by host root only).
/// </summary>
public static class UserNamespaces
{
    public const string RootfsMessage = "rootfs", BindMessage = "bind", SpecMessage = "spec";
    /// <summary>The rootfs as the init sees it once the idmapped tree is its working directory.</summary>
    public const string InitRootfs = "/proc/self/cwd";

    public static LinuxNamespace? UserNamespace(Spec spec) => spec.Linux?.Namespaces?.FirstOrDefault(n => n.Type == "user");

    /// <summary>The contents of /proc/PID/uid_map (or gid_map): one "container host size" line per
    /// mapping, written with one write(2) as the kernel requires. Checks what the kernel would
    /// refuse with a bare EINVAL, naming the field.</summary>
    public static string MapFile(IReadOnlyList<IdMapping>? mappings, string field)
    {
        if (mappings is not { Count: > 0 }) throw new InvalidDataException($"linux.{field}: required for a new user namespace");
        if (mappings.Count > 340) throw new InvalidDataException($"linux.{field}: {mappings.Count} mappings, the kernel takes at most 340");
        var sb = new StringBuilder();
        for (var i = 0; i < mappings.Count; i++)
        {
            var m = mappings[i];
            if (m.Size == 0) throw new InvalidDataException($"linux.{field}[{i}].size: must not be 0");
            if ((ulong)m.ContainerId + m.Size > uint.MaxValue || (ulong)m.HostId + m.Size > uint.MaxValue)
                throw new InvalidDataException($"linux.{field}[{i}]: {m.ContainerId}+{m.Size} or {m.HostId}+{m.Size} overflows 32 bits");
            for (var j = 0; j < i; j++)
            {
                var o = mappings[j];
                if (Overlap(m.ContainerId, o.ContainerId, m.Size, o.Size) || Overlap(m.HostId, o.HostId, m.Size, o.Size))
                    throw new InvalidDataException($"linux.{field}[{i}]: overlaps linux.{field}[{j}]");
            }
            sb.Append(CultureInfo.InvariantCulture, $"{m.ContainerId} {m.HostId} {m.Size}\n");
        }
        return sb.ToString();
    }

    private static bool Overlap(uint a, uint b, uint sizeA, uint sizeB) => a < (ulong)b + sizeB && b < (ulong)a + sizeA;

    /// <summary>Supervisor side: makes and sends the detached mounts and the spec. The init must
    /// be in its user namespace already (<paramref name="initPid"/>).</summary>
    public static void SendSetup(IKernel k, SyncChannel sync, Spec spec, string rootfs, int initPid)
    {
        var mapped = spec.Annotations?.GetValueOrDefault(Client.ShimAnnotations.RootfsIdmapped) == "true";
        using (var userns = mapped ? null : k.Open($"/proc/{initPid}/ns/user", 0 /* O_RDONLY */, 0))
        using (var tree = k.CloneMount(rootfs, recursive: false, idmapTo: userns))
            k.SendFd(sync.Handle, RootfsMessage, tree);
        var mounts = spec.Mounts ?? [];
        for (var i = 0; i < mounts.Count; i++)
        {
            var m = mounts[i];
            var o = MountOptions.Parse(m.Options);
            if (!(o.IsBind || m.Type == "bind")) continue;
            var source = m.Source ?? throw new InvalidDataException($"mounts: bind mount on {m.Destination} has no source");
            var kind = k.Stat(source);
            if (kind == FileKind.Missing) throw new KernelException("stat", source, Errno.ENOENT);
            using var clone = k.CloneMount(source, recursive: (o.Flags & L.MS_REC) != 0, idmapTo: null);
            k.SendFd(sync.Handle, $"{BindMessage} {i} {(kind == FileKind.Directory ? "dir" : "file")}", clone);
        }
        sync.Send(SpecMessage + " " + Encoding.UTF8.GetString(SpecFile.Serialize(spec)));
    }
}

/// <summary>Init side: the detached mounts received from the supervisor (<see cref="UserNamespaces"/>).</summary>
public sealed class DelegatedMounts : IDisposable
{
    public FdHandle? Root { get; set; }
    public Dictionary<int, (FdHandle Tree, bool IsDirectory)> Binds { get; } = [];
    public Spec? Spec { get; private set; }

    /// <summary>Takes one line of the setup; false when it is not part of it.</summary>
    public bool Accept(string line, SyncChannel sync)
    {
        if (line == UserNamespaces.RootfsMessage)
        {
            Root = sync.TakeFd() ?? throw new InvalidDataException("\"rootfs\" came without its mount");
            return true;
        }
        if (line.StartsWith(UserNamespaces.BindMessage + " ", StringComparison.Ordinal))
        {
            var parts = line.Split(' ');
            var tree = sync.TakeFd() ?? throw new InvalidDataException($"\"{line}\" came without its mount");
            Binds[int.Parse(parts[1], CultureInfo.InvariantCulture)] = (tree, parts[2] == "dir");
            return true;
        }
        if (line.StartsWith(UserNamespaces.SpecMessage + " ", StringComparison.Ordinal))
        {
            Spec = SpecFile.Parse(Encoding.UTF8.GetBytes(line[(UserNamespaces.SpecMessage.Length + 1)..]));
            return true;
        }
        return false;
    }

    public void Dispose()
    {
        Root?.Dispose();
        foreach (var (tree, _) in Binds.Values) tree.Dispose();
    }
}
