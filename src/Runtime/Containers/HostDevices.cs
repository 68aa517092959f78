using CriRuntime.Oci;

namespace CriRuntime.Containers;

/// <summary>The host's device nodes, which a privileged container gets in its /dev (as containerd's
/// WithHostDevices and CRI-O do): every character and block device under /dev, except what the
/// container's own /dev provides (pts and ptmx, shm, mqueue, fd) and the host's console.</summary>
public static class HostDevices
{
    private static readonly HashSet<string> SkippedDirs = new(StringComparer.Ordinal) { "pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev" };
    private const uint S_IFMT = 0xF000, S_IFCHR = 0x2000, S_IFBLK = 0x6000, S_IFDIR = 0x4000;

    /// <summary>(mode, major, minor) of a path without following a symlink, or null when it is gone.</summary>
    public delegate (uint Mode, uint Major, uint Minor)? Lstat(string path);

    public static List<LinuxDevice> Scan(string dir, Func<string, IEnumerable<string>> list, Lstat lstat)
    {
        var result = new List<LinuxDevice>();
        Walk(dir, "/dev", result, list, lstat);
        return result;
    }

    private static void Walk(string hostDir, string containerDir, List<LinuxDevice> result, Func<string, IEnumerable<string>> list, Lstat lstat)
    {
        foreach (var name in list(hostDir).Order(StringComparer.Ordinal))
        {
            var host = $"{hostDir}/{name}";
            var path = $"{containerDir}/{name}";
            if (lstat(host) is not { } info) continue; // gone meanwhile
            switch (info.Mode & S_IFMT)
            {
                case S_IFDIR:
                    if (!SkippedDirs.Contains(name)) Walk(host, path, result, list, lstat);
                    break;
                // The console is the host's; ptmx is the container's own devpts' (a symlink).
                case S_IFCHR or S_IFBLK when path is not ("/dev/console" or "/dev/ptmx"):
                    result.Add(new LinuxDevice
                    {
                        Type = (info.Mode & S_IFMT) == S_IFCHR ? "c" : "b",
                        Path = path,
                        Major = info.Major,
                        Minor = info.Minor,
                        FileMode = info.Mode & 0xFFF,
                        Uid = 0,
                        Gid = 0,
                    });
                    break;
            }
        }
    }
}
