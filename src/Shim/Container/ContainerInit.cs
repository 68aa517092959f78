using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>`criruntime-shim init`: the container's first process, started by the supervisor
/// in the new namespaces (pid 1 of the new pid namespace), with the container's stdio on fds
/// 0-2 and the sync socket on fd 3. It sets the container up on its main thread, reports
/// "created", waits for "start", becomes the container's user and execs the command, so the
/// command keeps pid 1. Nothing here forks.</summary>
public static unsafe partial class ContainerInit
{
    public const int SyncFd = 3;

    public static int Run(string bundle)
    {
        var sync = new SyncChannel(new FdHandle(SyncFd));
        var k = LinuxKernel.Instance;
        try
        {
            // The supervisor dies → we die. The parent is the supervisor thread that spawned us,
            // which lives as long as the supervisor. Set again after setresuid, which clears it.
            k.Prctl(L.PR_SET_PDEATHSIG, L.SIGKILL);
            // "go": the supervisor has put us in the container's cgroup, so a cgroup namespace
            // made now is rooted at it. A container in a user namespace gets its spec and the
            // mounts only host root can make first (UserNamespaces).
            using var delegated = new DelegatedMounts();
            var line = sync.Receive();
            while (line is not null && delegated.Accept(line, sync)) line = sync.Receive();
            if (line != "go") return 1;
            var spec = delegated.Spec ?? SpecFile.Load(bundle);
            var process = spec.Process ?? throw new InvalidDataException("config.json has no process");
            string rootfs;
            if (delegated.Root is not null) rootfs = UserNamespaces.InitRootfs;
            else
            {
                rootfs = spec.Root?.Path ?? "rootfs";
                rootfs = Path.GetFullPath(Path.IsPathRooted(rootfs) ? rootfs : Path.Combine(bundle, rootfs));
            }
            if (spec.Linux?.Seccomp is not null) Seccomp.SeccompFilter.Preload();
            AssemblyPreload.All();
            var cgroupNs = spec.Linux?.Namespaces?.FirstOrDefault(n => n.Type == "cgroup");
            if (cgroupNs is not null && string.IsNullOrEmpty(cgroupNs.Path)) k.Unshare(L.CLONE_NEWCGROUP);

            // The host's hierarchies, from this mount namespace (still a copy of the host's).
            var cgroups = spec.Mounts?.Any(m => m.Type == "cgroup") == true ? Cgroups.CgroupLayout.Detect() : null;
            foreach (var step in RootfsPlan.Build(spec, rootfs, delegated, cgroups)) step.Apply(k);
            DevNullStdio.Reopen(k);
            ProcessPlan.ApplyLimits(k, process, w => sync.Send("warn " + w));
            if (process.Terminal) Terminal.Setup(k, sync.Handle);

            sync.Send("created");
            if (sync.Receive() != "start") return 1; // supervisor gone or gave up: never run the command

            var seccomp = spec.Linux?.Seccomp;
            // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the container
            // may not keep: load it while still privileged (runc does the same).
            if (seccomp is not null && !process.NoNewPrivileges) Seccomp.SeccompFilter.Load(seccomp);
            ProcessPlan.CheckHeld(process, Capabilities.HeldBounding());
            ProcessPlan.ApplyIdentity(k, process, Capabilities.KernelLast());
            var exe = ProcessPlan.ResolveExecutable(process, IsExecutable);
            if (seccomp is not null && process.NoNewPrivileges) Seccomp.SeccompFilter.Load(seccomp);

            k.Prctl(L.PR_SET_PDEATHSIG, L.SIGKILL);
            if (!PeerAlive(sync)) return 1;
            Libc.SetCloexec(SyncFd, true);
            Exec(exe, process.Args, process.Env ?? [$"PATH={ProcessPlan.DefaultPath}"]);
            return 127; // not reached
        }
        // This is the init process's error boundary: whatever failed (a syscall, a missing
        // library, a bad spec), the supervisor must hear why rather than see a crash.
        catch (Exception e)
        {
            try { Libc.SetCloexec(SyncFd, false); sync.Send("error " + e.Message); } catch (IOException) { }
            return 127;
        }
    }

    /// <summary>execvp's test, as the container's user (access(2) checks the real uid).</summary>
    internal static bool IsExecutable(string path) => Libc.Access(path, 1 /* X_OK */) == 0 && !Directory.Exists(path);

    /// <summary>Closes the window between the supervisor dying and PR_SET_PDEATHSIG being set:
    /// a peer that is gone shows as end-of-file on the socket.</summary>
    private static bool PeerAlive(SyncChannel sync)
    {
        const int MSG_PEEK = 2, MSG_DONTWAIT = 0x40;
        byte b;
        var n = Libc.Recv(sync.Handle.Fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n != 0;
    }

    internal static void Exec(string path, IReadOnlyList<string> args, IReadOnlyList<string> env)
    {
        // execve replaces the image: this memory is never freed, nor does it need to be.
        var argv = NullTerminated(args);
        var envp = NullTerminated(env);
        var p = Utf8(path);
        Libc.Execve(p, argv, envp);
        throw KernelException.Last("execve", path);
    }

    private static byte* Utf8(string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        var p = (byte*)NativeMemory.Alloc((nuint)bytes.Length + 1);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        p[bytes.Length] = 0;
        return p;
    }

    private static byte** NullTerminated(IReadOnlyList<string> items)
    {
        var arr = (byte**)NativeMemory.Alloc((nuint)(items.Count + 1), (nuint)sizeof(byte*));
        for (var i = 0; i < items.Count; i++) arr[i] = Utf8(items[i]);
        arr[items.Count] = null;
        return arr;
    }
}
