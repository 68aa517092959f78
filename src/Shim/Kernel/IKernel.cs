using CriRuntime.Interop;
namespace CriRuntime.Shim.Kernel;

public enum FileKind { Missing, Directory, File, Other }

/// <summary>Every system call that changes the container's world. The container init drives
/// <see cref="LinuxKernel"/>; unit tests drive <see cref="RecordingKernel"/> and assert on the
/// calls, so mount plans and credential changes are testable without root. Failures throw
/// <see cref="KernelException"/> (operation, path, errno).</summary>
public interface IKernel
{
    // filesystem and mounts
    void Mount(string? source, string target, string? fstype, ulong flags, string? data);
    void Umount2(string target, int flags);
    /// <summary>mount_setattr(2): change attributes (MOUNT_ATTR_*) of a mount, with
    /// <paramref name="recursive"/> of every mount below it too (the "rro" family of options).</summary>
    void MountSetattr(string path, ulong attrSet, ulong attrClr, bool recursive);
    void PivotRoot(string newRoot, string putOld);
    /// <summary>open_tree(OPEN_TREE_CLONE) of <paramref name="path"/>: a detached copy of the mount
    /// (of the tree below it too when <paramref name="recursive"/>), and with
    /// <paramref name="idmapTo"/> (a user namespace) mount_setattr MOUNT_ATTR_IDMAP, so its files
    /// show that namespace's ids for the host's.</summary>
    FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo);
    /// <summary>move_mount(2) of a detached tree (<see cref="CloneMount"/>) onto <paramref name="target"/>
    /// ("." is the working directory itself).</summary>
    void MoveMount(FdHandle tree, string target);
    /// <summary>fchdir(2): e.g. into an attached tree, whose mount now hides the directory it covers.</summary>
    void Fchdir(FdHandle dir);
    void Chdir(string path);
    void Chroot(string path);
    void Mkdir(string path, uint mode);
    /// <summary>Creates an empty file if none exists (a bind-mount target for a file source).</summary>
    void CreateFile(string path, uint mode);
    void Mknod(string path, uint mode, ulong dev);
    void Symlink(string target, string linkPath);
    void Chown(string path, uint uid, uint gid);
    /// <summary>The target of a symlink, or null when the path is not a symlink or does not exist.</summary>
    string? ReadLink(string path);
    /// <summary>Follows symlinks; <see cref="FileKind.Missing"/> when nothing is there.</summary>
    FileKind Stat(string path);
    /// <summary>One write(2) of the whole value: /proc/sys/*, /proc/self/oom_score_adj.</summary>
    void WriteFile(string path, string content);
    FdHandle Open(string path, int flags, uint mode);

    // namespaces and identity
    void SetHostname(string name);
    void SetDomainname(string name);
    void SetNs(string path, int nsType);
    void Unshare(int flags);

    // credentials and limits
    void Prctl(int option, ulong arg2, ulong arg3 = 0, ulong arg4 = 0, ulong arg5 = 0);
    void Capset(ulong effective, ulong permitted, ulong inheritable);
    void SetGroups(IReadOnlyList<uint> gids);
    void SetResGid(uint gid);
    void SetResUid(uint uid);
    void SetRlimit(int resource, ulong soft, ulong hard);
    void Umask(uint mask);

    // terminals and descriptors (src/Shim/Container/Terminal.cs)
    /// <summary>Unlocks the pty whose master is <paramref name="master"/> (TIOCSPTLCK 0) and opens
    /// its peer (TIOCGPTPEER, O_RDWR|O_NOCTTY): no path lookup, so always the same devpts instance.</summary>
    FdHandle OpenPtyPeer(FdHandle master);
    /// <summary>setsid (already a session leader is fine) and TIOCSCTTY: <paramref name="tty"/>
    /// becomes the calling process's controlling terminal.</summary>
    void SetControllingTerminal(FdHandle tty);
    void Dup2(FdHandle from, int to);
    /// <summary>Writes "<paramref name="message"/>\n" with <paramref name="fd"/> attached (SCM_RIGHTS).</summary>
    void SendFd(FdHandle socket, string message, FdHandle fd);
}

/// <summary>Constants of the Linux ABI (x86_64/aarch64 agree on all of these).</summary>
public static class Abi
{
    public const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_SYNCHRONOUS = 16,
        MS_REMOUNT = 32, MS_MANDLOCK = 64, MS_DIRSYNC = 128, MS_NOSYMFOLLOW = 256, MS_NOATIME = 1024,
        MS_NODIRATIME = 2048, MS_BIND = 4096, MS_MOVE = 8192, MS_REC = 16384, MS_SILENT = 32768,
        MS_UNBINDABLE = 1 << 17, MS_PRIVATE = 1 << 18, MS_SLAVE = 1 << 19, MS_SHARED = 1 << 20,
        MS_RELATIME = 1 << 21, MS_STRICTATIME = 1 << 24;
    public const int MNT_DETACH = 2;
    public const ulong MOUNT_ATTR_RDONLY = 1, MOUNT_ATTR_NOSUID = 2, MOUNT_ATTR_NODEV = 4, MOUNT_ATTR_NOEXEC = 8,
        MOUNT_ATTR__ATIME = 0x70, MOUNT_ATTR_NOATIME = 0x10, MOUNT_ATTR_STRICTATIME = 0x20,
        MOUNT_ATTR_NODIRATIME = 0x80, MOUNT_ATTR_NOSYMFOLLOW = 0x200000;

    public const int CLONE_FS = 0x200, CLONE_NEWTIME = 0x80, CLONE_NEWNS = 0x20000, CLONE_NEWCGROUP = 0x02000000,
        CLONE_NEWUTS = 0x04000000, CLONE_NEWIPC = 0x08000000, CLONE_NEWUSER = 0x10000000,
        CLONE_NEWPID = 0x20000000, CLONE_NEWNET = 0x40000000;

    public const int PR_SET_PDEATHSIG = 1, PR_SET_KEEPCAPS = 8, PR_CAPBSET_DROP = 24,
        PR_SET_CHILD_SUBREAPER = 36, PR_SET_NO_NEW_PRIVS = 38, PR_CAP_AMBIENT = 47,
        PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_CLEAR_ALL = 4;

    public const uint S_IFCHR = 0x2000, S_IFBLK = 0x6000, S_IFIFO = 0x1000;

    public const int SIGHUP = 1, SIGINT = 2, SIGKILL = 9, SIGTERM = 15, SIGCHLD = 17;

    /// <summary>OCI namespace type → CLONE_NEW* flag.</summary>
    public static int NamespaceFlag(string type) => type switch
    {
        "pid" => CLONE_NEWPID,
        "network" => CLONE_NEWNET,
        "mount" => CLONE_NEWNS,
        "ipc" => CLONE_NEWIPC,
        "uts" => CLONE_NEWUTS,
        "user" => CLONE_NEWUSER,
        "cgroup" => CLONE_NEWCGROUP,
        "time" => CLONE_NEWTIME,
        _ => throw new InvalidDataException($"linux.namespaces: unknown namespace type \"{type}\""),
    };

    public static readonly IReadOnlyDictionary<string, int> Rlimits = new Dictionary<string, int>
    {
        ["RLIMIT_CPU"] = 0, ["RLIMIT_FSIZE"] = 1, ["RLIMIT_DATA"] = 2, ["RLIMIT_STACK"] = 3,
        ["RLIMIT_CORE"] = 4, ["RLIMIT_RSS"] = 5, ["RLIMIT_NPROC"] = 6, ["RLIMIT_NOFILE"] = 7,
        ["RLIMIT_MEMLOCK"] = 8, ["RLIMIT_AS"] = 9, ["RLIMIT_LOCKS"] = 10, ["RLIMIT_SIGPENDING"] = 11,
        ["RLIMIT_MSGQUEUE"] = 12, ["RLIMIT_NICE"] = 13, ["RLIMIT_RTPRIO"] = 14, ["RLIMIT_RTTIME"] = 15,
    };
}
