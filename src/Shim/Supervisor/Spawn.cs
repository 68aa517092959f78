using System.Collections;
using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;
using CriRuntime.Shim.Client;

namespace CriRuntime.Shim.Supervisor;

/// <summary>posix_spawn(3) from managed code. glibc's posix_spawn runs only libc code in the
/// child (clone(CLONE_VM|CLONE_VFORK), then the file actions, then execve), so no managed code
/// runs between fork and exec. Signals are reset in the child: .NET ignores SIGPIPE and blocks
/// some signals, and a container must start with the defaults.</summary>
public static unsafe class Spawn
{
    private const short POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSID = 0x80;

    /// <param name="fds">child fd → parent fd to dup there (dup2 clears close-on-exec); a
    /// negative parent fd opens /dev/null instead. Every other descriptor is close-on-exec
    /// (.NET and this code open everything O_CLOEXEC), so the child gets exactly these.</param>
    public static int Run(string path, IReadOnlyList<string> argv, IReadOnlyList<string> env,
        IReadOnlyDictionary<int, int> fds, bool newSession)
    {
        var fa = NativeMemory.AllocZeroed(1024);
        var attr = NativeMemory.AllocZeroed(1024);
        var sigs = NativeMemory.AllocZeroed(256);
        var strings = new List<nint>();
        try
        {
            Libc.FileActionsInit(fa);
            // The dup2s run in order, so a source that is also a target could be overwritten
            // before use. Sources are fresh descriptors (above 3) in practice: refuse the rest.
            foreach (var (to, from) in fds.OrderBy(kv => kv.Key))
            {
                if (from >= 0 && from != to && fds.ContainsKey(from))
                    throw new ArgumentException($"spawn: fd {from} is both a source and a target");
                var rc = from < 0
                    ? Libc.FileActionsAddOpen(fa, to, "/dev/null", Libc.O_RDWR, 0)
                    : Libc.FileActionsAddDup2(fa, from, to);
                if (rc != 0) throw new KernelException("posix_spawn_file_actions", $"fd {to}", rc);
            }
            Libc.SpawnAttrInit(attr);
            var flags = (short)(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (newSession ? POSIX_SPAWN_SETSID : 0));
            Libc.SpawnAttrSetFlags(attr, flags);
            Libc.SigFillSet(sigs);
            Libc.SpawnAttrSetSigDefault(attr, sigs);
            Libc.SigEmptySet(sigs);
            Libc.SpawnAttrSetSigMask(attr, sigs);

            var argvp = Strings(argv, strings);
            var envp = Strings(env, strings);
            var p = Utf8(path, strings);
            int pid;
            var err = Libc.PosixSpawn(&pid, p, fa, attr, argvp, envp);
            if (err != 0) throw new KernelException("posix_spawn", path, err);
            return pid;
        }
        finally
        {
            Libc.FileActionsDestroy(fa);
            Libc.SpawnAttrDestroy(attr);
            NativeMemory.Free(fa);
            NativeMemory.Free(attr);
            NativeMemory.Free(sigs);
            foreach (var s in strings) NativeMemory.Free((void*)s);
        }
    }

    /// <summary>This process's environment for a child, without the supervisor's own runtime
    /// settings (<see cref="SupervisorTuning"/>): a child that needs them is given them explicitly.</summary>
    public static IReadOnlyList<string> CurrentEnvironment()
    {
        var list = new List<string>();
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            var entry = $"{e.Key}={e.Value}";
            if (!SupervisorTuning.Sets(entry)) list.Add(entry);
        }
        return list;
    }

    /// <summary>A NUL-terminated copy in native memory, freed by whoever owns <paramref name="owned"/>.</summary>
    internal static byte* Utf8(string s, List<nint> owned)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        var p = (byte*)NativeMemory.Alloc((nuint)bytes.Length + 1);
        owned.Add((nint)p);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        p[bytes.Length] = 0;
        return p;
    }

    /// <summary>A NULL-terminated array of <see cref="Utf8"/> strings (argv, envp).</summary>
    internal static byte** Strings(IReadOnlyList<string> items, List<nint> owned)
    {
        var arr = (byte**)NativeMemory.Alloc((nuint)(items.Count + 1), (nuint)sizeof(byte*));
        owned.Add((nint)arr);
        for (var i = 0; i < items.Count; i++) arr[i] = Utf8(items[i], owned);
        arr[items.Count] = null;
        return arr;
    }

    /// <summary>pipe2(O_CLOEXEC): (read end, write end).</summary>
    public static (FdHandle Read, FdHandle Write) Pipe()
    {
        var fds = stackalloc int[2];
        if (Libc.Pipe2(fds, Libc.O_CLOEXEC) != 0) throw KernelException.Last("pipe2", "");
        return (new FdHandle(fds[0]), new FdHandle(fds[1]));
    }

    /// <summary>A connected AF_UNIX stream pair, close-on-exec on both ends: the child's end
    /// reaches the child by an explicit dup2 (which clears the flag), so no other child started
    /// meanwhile can inherit it.</summary>
    public static (FdHandle Parent, FdHandle Child) SocketPair()
    {
        var fds = stackalloc int[2];
        if (Libc.SocketPair(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0, fds) != 0) throw KernelException.Last("socketpair", "");
        return (new FdHandle(fds[0]), new FdHandle(fds[1]));
    }

    public static FdHandle PidFdOpen(int pid) =>
        Libc.PidfdOpen(pid) ?? throw Errno.Exception("pidfd_open", pid.ToString(System.Globalization.CultureInfo.InvariantCulture), Errno.ESRCH);

    /// <summary>Signals through a pidfd, so a recycled pid can never be hit. False when the
    /// process is already gone.</summary>
    public static bool Signal(FdHandle pidfd, int signal) => Libc.PidfdSignal(pidfd, signal);
}
