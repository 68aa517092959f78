using CriRuntime.Interop;
namespace CriRuntime.Shim.Kernel;

/// <summary>A fake kernel for unit tests: records each call as one readable line
/// ("mount proc /r/proc proc nosuid|nodev|noexec") and changes nothing. <see cref="Files"/>
/// answers <see cref="Stat"/>; <see cref="Failures"/> makes chosen operations fail with an errno
/// to test error handling (e.g. EPERM on a negative oom_score_adj).</summary>
public sealed class RecordingKernel : IKernel
{
    public List<string> Calls { get; } = [];
    public Dictionary<string, FileKind> Files { get; } = [];
    /// <summary>Call prefix (e.g. "setrlimit 7") → errno to throw.</summary>
    public Dictionary<string, int> Failures { get; } = [];

    private void Record(string op, string path, string line)
    {
        foreach (var (prefix, errno) in Failures)
            if (line.StartsWith(prefix, StringComparison.Ordinal)) throw new KernelException(op, path, errno);
        Calls.Add(line);
    }

    public void Mount(string? source, string target, string? fstype, ulong flags, string? data) =>
        Record("mount", target, $"mount {source ?? "none"} {target} {fstype ?? "-"} {MountFlags.Format(flags)}{(string.IsNullOrEmpty(data) ? "" : " " + data)}");
    public void Umount2(string target, int flags) => Record("umount2", target, $"umount2 {target} {flags}");
    public void MountSetattr(string path, ulong attrSet, ulong attrClr, bool recursive) =>
        Record("mount_setattr", path, $"mount_setattr {path} set=0x{attrSet:x} clr=0x{attrClr:x}{(recursive ? " recursive" : "")}");
    public void PivotRoot(string newRoot, string putOld) => Record("pivot_root", newRoot, $"pivot_root {newRoot} {putOld}");
    public FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo)
    {
        Record("open_tree", path, $"open_tree {path} clone{(recursive ? "|recursive" : "")}{(idmapTo is not null ? "; mount_setattr idmap" : "")}");
        return new FdHandle(-1);
    }
    public void MoveMount(FdHandle tree, string target) => Record("move_mount", target, $"move_mount tree {target}");
    public void Fchdir(FdHandle dir) => Record("fchdir", "", "fchdir tree");
    public void Chdir(string path) => Record("chdir", path, $"chdir {path}");
    public void Chroot(string path) => Record("chroot", path, $"chroot {path}");
    public void Mkdir(string path, uint mode) => Record("mkdir", path, $"mkdir {path} {Convert.ToString(mode, 8)}");
    public void CreateFile(string path, uint mode) => Record("create", path, $"create {path} {Convert.ToString(mode, 8)}");
    public void Mknod(string path, uint mode, ulong dev) => Record("mknod", path, $"mknod {path} {Convert.ToString(mode, 8)} {dev}");
    public void Symlink(string target, string linkPath) => Record("symlink", linkPath, $"symlink {linkPath} -> {target}");
    public void Chown(string path, uint uid, uint gid) => Record("chown", path, $"chown {path} {uid}:{gid}");
    /// <summary>Symlinks the fake filesystem has: path → target.</summary>
    public Dictionary<string, string> Links { get; } = [];
    public string? ReadLink(string path) => Links.GetValueOrDefault(path);
    public FileKind Stat(string path) => Files.GetValueOrDefault(path, FileKind.Missing);
    public void WriteFile(string path, string content) => Record("write", path, $"write {path} {content}");
    public FdHandle Open(string path, int flags, uint mode)
    {
        Record("open", path, $"open {path} {flags}");
        return new FdHandle(-1);
    }
    public void SetHostname(string name) => Record("sethostname", name, $"sethostname {name}");
    public void SetDomainname(string name) => Record("setdomainname", name, $"setdomainname {name}");
    public void SetNs(string path, int nsType) => Record("setns", path, $"setns {path} 0x{nsType:x}");
    public void Unshare(int flags) => Record("unshare", "", $"unshare 0x{flags:x}");
    public void Prctl(int option, ulong arg2, ulong arg3 = 0, ulong arg4 = 0, ulong arg5 = 0) =>
        Record("prctl", "", $"prctl {option} {arg2}{(arg3 != 0 ? $" {arg3}" : "")}");
    public void Capset(ulong effective, ulong permitted, ulong inheritable) =>
        Record("capset", "", $"capset eff=0x{effective:x} prm=0x{permitted:x} inh=0x{inheritable:x}");
    public void SetGroups(IReadOnlyList<uint> gids) => Record("setgroups", "", $"setgroups {string.Join(',', gids)}");
    public void SetResGid(uint gid) => Record("setresgid", "", $"setresgid {gid}");
    public void SetResUid(uint uid) => Record("setresuid", "", $"setresuid {uid}");
    public void SetRlimit(int resource, ulong soft, ulong hard) => Record("setrlimit", "", $"setrlimit {resource} {soft} {hard}");
    public void Umask(uint mask) => Record("umask", "", $"umask {Convert.ToString(mask, 8)}");
    public FdHandle OpenPtyPeer(FdHandle master)
    {
        Record("ioctl", "", "ioctl TIOCSPTLCK 0; ioctl TIOCGPTPEER O_RDWR|O_NOCTTY");
        return new FdHandle(-1);
    }
    public void SetControllingTerminal(FdHandle tty) => Record("ioctl", "", "setsid; ioctl TIOCSCTTY");
    public void Dup2(FdHandle from, int to) => Record("dup2", "", $"dup2 peer {to}");
    public void SendFd(FdHandle socket, string message, FdHandle fd) => Record("sendmsg", "", $"sendmsg \"{message}\" SCM_RIGHTS 1");
}
