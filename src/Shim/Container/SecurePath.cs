using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>Resolves a path inside the container's rootfs the way the container would see it,
/// before pivot_root: symlinks in the image are followed relative to the rootfs, never to the
/// host, and ".." stops at the rootfs. Without this a hostile image could ship /etc as a symlink
/// to a host directory and have a bind mount or a mknod land on the host (what runc's securejoin
/// and crun's safe_openat prevent). Done when the step runs, not when the plan is built, because
/// earlier mounts change what a path resolves to. A rename race after resolution is still
/// possible; openat2(RESOLVE_IN_ROOT) would close it.</summary>
public static class SecurePath
{
    private const int MaxSymlinks = 255;

    public static string Resolve(IKernel k, string rootfs, string containerPath)
    {
        var pending = new Stack<string>(Components(containerPath).Reverse());
        var resolved = new List<string>();
        var links = 0;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part == "..") { if (resolved.Count > 0) resolved.RemoveAt(resolved.Count - 1); continue; }
            var candidate = Join(rootfs, resolved.Append(part));
            var target = k.ReadLink(candidate);
            if (target is null) { resolved.Add(part); continue; }
            if (++links > MaxSymlinks) throw new KernelException("resolve", containerPath, 40 /* ELOOP */);
            if (target.StartsWith('/')) resolved.Clear();
            foreach (var p in Components(target).Reverse()) pending.Push(p);
        }
        return Join(rootfs, resolved);
    }

    /// <summary>A host path below <paramref name="root"/> (built lexically by the plan) resolved
    /// securely; null root means "not inside a rootfs", used as is.</summary>
    public static string InRoot(IKernel k, string? root, string hostPath)
    {
        if (root is null) return hostPath;
        var rel = Path.GetRelativePath(root, hostPath);
        if (rel == ".") return root;
        if (rel.StartsWith("..", StringComparison.Ordinal)) throw new ArgumentException($"{hostPath} is not below {root}");
        return Resolve(k, root, "/" + rel);
    }

    private static IEnumerable<string> Components(string path) =>
        path.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".");

    private static string Join(string rootfs, IEnumerable<string> parts)
    {
        var tail = string.Join('/', parts);
        return tail.Length == 0 ? rootfs : rootfs.TrimEnd('/') + "/" + tail;
    }
}
