using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;

namespace CriRuntime.Shim.Container;

/// <summary>An OCI mount's "options" split the way mount(2) needs them: flags for the mount call,
/// a propagation change (applied by a separate mount call, the kernel refuses to mix them),
/// recursive attributes for mount_setattr ("rro", ...), and the rest as the data string
/// ("mode=755,size=65536k").</summary>
public sealed record MountOptions(ulong Flags, ulong Propagation, ulong RecursiveSet, ulong RecursiveClear, string Data)
{
    public bool IsBind => (Flags & L.MS_BIND) != 0;

    private static readonly Dictionary<string, (bool Clear, ulong Flag)> FlagOptions = new()
    {
        ["ro"] = (false, L.MS_RDONLY), ["rw"] = (true, L.MS_RDONLY),
        ["nosuid"] = (false, L.MS_NOSUID), ["suid"] = (true, L.MS_NOSUID),
        ["nodev"] = (false, L.MS_NODEV), ["dev"] = (true, L.MS_NODEV),
        ["noexec"] = (false, L.MS_NOEXEC), ["exec"] = (true, L.MS_NOEXEC),
        ["sync"] = (false, L.MS_SYNCHRONOUS), ["async"] = (true, L.MS_SYNCHRONOUS),
        ["dirsync"] = (false, L.MS_DIRSYNC), ["remount"] = (false, L.MS_REMOUNT),
        ["mand"] = (false, L.MS_MANDLOCK), ["nomand"] = (true, L.MS_MANDLOCK),
        ["noatime"] = (false, L.MS_NOATIME), ["atime"] = (true, L.MS_NOATIME),
        ["nodiratime"] = (false, L.MS_NODIRATIME), ["diratime"] = (true, L.MS_NODIRATIME),
        ["relatime"] = (false, L.MS_RELATIME), ["norelatime"] = (true, L.MS_RELATIME),
        ["strictatime"] = (false, L.MS_STRICTATIME), ["nostrictatime"] = (true, L.MS_STRICTATIME),
        ["nosymfollow"] = (false, L.MS_NOSYMFOLLOW), ["symfollow"] = (true, L.MS_NOSYMFOLLOW),
        ["bind"] = (false, L.MS_BIND), ["rbind"] = (false, L.MS_BIND | L.MS_REC),
    };

    private static readonly Dictionary<string, ulong> PropagationOptions = new()
    {
        ["private"] = L.MS_PRIVATE, ["rprivate"] = L.MS_PRIVATE | L.MS_REC,
        ["shared"] = L.MS_SHARED, ["rshared"] = L.MS_SHARED | L.MS_REC,
        ["slave"] = L.MS_SLAVE, ["rslave"] = L.MS_SLAVE | L.MS_REC,
        ["unbindable"] = L.MS_UNBINDABLE, ["runbindable"] = L.MS_UNBINDABLE | L.MS_REC,
    };

    private static readonly Dictionary<string, (bool Clear, ulong Attr)> RecursiveOptions = new()
    {
        ["rro"] = (false, L.MOUNT_ATTR_RDONLY), ["rrw"] = (true, L.MOUNT_ATTR_RDONLY),
        ["rnosuid"] = (false, L.MOUNT_ATTR_NOSUID), ["rsuid"] = (true, L.MOUNT_ATTR_NOSUID),
        ["rnodev"] = (false, L.MOUNT_ATTR_NODEV), ["rdev"] = (true, L.MOUNT_ATTR_NODEV),
        ["rnoexec"] = (false, L.MOUNT_ATTR_NOEXEC), ["rexec"] = (true, L.MOUNT_ATTR_NOEXEC),
        ["rnodiratime"] = (false, L.MOUNT_ATTR_NODIRATIME), ["rdiratime"] = (true, L.MOUNT_ATTR_NODIRATIME),
        ["rnosymfollow"] = (false, L.MOUNT_ATTR_NOSYMFOLLOW), ["rsymfollow"] = (true, L.MOUNT_ATTR_NOSYMFOLLOW),
    };

    public static MountOptions Parse(IEnumerable<string>? options)
    {
        ulong flags = 0, propagation = 0, set = 0, clear = 0;
        var data = new List<string>();
        foreach (var o in options ?? [])
        {
            if (FlagOptions.TryGetValue(o, out var f))
            {
                if (f.Clear) flags &= ~f.Flag; else flags |= f.Flag;
            }
            else if (PropagationOptions.TryGetValue(o, out var p)) propagation = p;
            else if (RecursiveOptions.TryGetValue(o, out var r))
            {
                if (r.Clear) { clear |= r.Attr; set &= ~r.Attr; } else { set |= r.Attr; clear &= ~r.Attr; }
            }
            else if (o is "tmpcopyup" or "idmap" or "ridmap" or "defaults") { } // not supported / no-op
            else data.Add(o);
        }
        return new MountOptions(flags, propagation, set, clear, string.Join(',', data));
    }
}
