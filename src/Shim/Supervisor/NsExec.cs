using System.Globalization;
using CriRuntime.Oci;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Starts a process in a user namespace through `criruntime-nsexec`
/// (src/NsExec/nsexec.c): a multi-threaded .NET process can neither unshare(CLONE_NEWUSER) nor
/// setns into a user namespace, so this single-threaded helper does it, then becomes the
/// namespace's root, unshares the namespaces it must own and execs the program. Called on a
/// spawning thread that already joined the namespaces given by path.</summary>
public static class NsExec
{
    public const string BinaryName = "criruntime-nsexec";
    /// <summary>The helper's end of its sync socket in the helper (the program's own sync socket is fd 3).</summary>
    public const int SyncFd = 4;

    /// <summary>CRIRUNTIME_NSEXEC, else next to the shim's binary.</summary>
    public static string BinaryPath =>
        Environment.GetEnvironmentVariable("CRIRUNTIME_NSEXEC") is { Length: > 0 } p ? p : Path.Combine(AppContext.BaseDirectory, BinaryName);

    /// <summary>Spawns <paramref name="exe"/> in the user namespace <paramref name="user"/> (joined
    /// when it has a path, else created with the spec's mappings, written from here), after
    /// unsharing <paramref name="unshareFlags"/> in it. Returns the program's pid: the helper's own,
    /// or with CLONE_NEWPID the pid of the child it forked (our child too: CLONE_PARENT).</summary>
    public static int Start(Spec spec, LinuxNamespace user, int unshareFlags, string exe, IReadOnlyList<string> argv,
        IReadOnlyList<string> env, IReadOnlyDictionary<int, int> fds)
    {
        var helper = BinaryPath;
        if (!File.Exists(helper)) throw new NotSupportedException($"linux.namespaces: a user namespace needs {helper}, which is missing (`make build` builds it)");
        if (fds.ContainsKey(SyncFd)) throw new ArgumentException($"nsexec: fd {SyncFd} is its sync channel");
        string? uidMap = null, gidMap = null;
        if (string.IsNullOrEmpty(user.Path))
        {
            uidMap = UserNamespaces.MapFile(spec.Linux?.UidMappings, "uidMappings");
            gidMap = UserNamespaces.MapFile(spec.Linux?.GidMappings, "gidMappings");
        }
        List<string> args = [BinaryName, .. string.IsNullOrEmpty(user.Path) ? ["--new-userns"] : new[] { "--userns", user.Path! }];
        if (unshareFlags != 0) args.AddRange(["--unshare", unshareFlags.ToString("x", CultureInfo.InvariantCulture)]);
        args.Add("--");
        args.Add(exe);
        args.AddRange(argv.Skip(1));

        var (ours, theirs) = Spawn.SocketPair();
        using var sync = new SyncChannel(ours);
        int helperPid;
        using (theirs)
            helperPid = Spawn.Run(helper, args, env, new Dictionary<int, int>(fds) { [SyncFd] = theirs.Fd }, newSession: true);
        var k = LinuxKernel.Instance;
        var line = sync.Receive();
        if (line == "userns" && uidMap is not null && gidMap is not null)
        {
            // setgroups stays "allow": we are privileged in the parent namespace, and the
            // container's supplementary groups are set with setgroups(2).
            k.WriteFile($"/proc/{helperPid}/uid_map", uidMap);
            k.WriteFile($"/proc/{helperPid}/gid_map", gidMap);
            sync.Send("mapped");
            line = sync.Receive();
        }
        if (line == "init self") return helperPid;
        if (line is not null && line.StartsWith("init ", StringComparison.Ordinal)
            && int.TryParse(line.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return pid;
        throw new InvalidOperationException(line is not null && line.StartsWith("error ", StringComparison.Ordinal)
            ? $"{BinaryName}: {line[6..]}"
            : $"{BinaryName} exited without starting the container (said: {line ?? "nothing"})");
    }
}
