using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>The credential and limit changes of the container process, as calls on
/// <see cref="IKernel"/>: limits while the init waits for "start", identity right before exec.</summary>
public static class ProcessPlan
{
    /// <summary>rlimits and oom_score_adj. Raising a hard limit or lowering oom_score_adj needs
    /// CAP_SYS_RESOURCE, which this runtime may lack: those failures are reported through
    /// <paramref name="warn"/> and the container runs with the inherited value instead.</summary>
    public static void ApplyLimits(IKernel k, Process p, Action<string> warn)
    {
        foreach (var r in p.Rlimits ?? [])
        {
            if (!L.Rlimits.TryGetValue(r.Type, out var resource))
                throw new InvalidDataException($"process.rlimits: unknown type \"{r.Type}\"");
            try { k.SetRlimit(resource, r.Soft, r.Hard); }
            catch (KernelException e) when (e.Errno == Errno.EPERM)
            {
                warn($"{r.Type} soft {r.Soft} hard {r.Hard}: {e.Message}; keeping the inherited limit");
            }
        }
        if (p.OomScoreAdj is { } adj)
        {
            try { k.WriteFile("/proc/self/oom_score_adj", adj.ToString(System.Globalization.CultureInfo.InvariantCulture)); }
            catch (KernelException e) when (e.Errno is Errno.EPERM or Errno.EACCES)
            {
                warn($"oom_score_adj {adj}: {e.Message}; keeping the inherited value");
            }
        }
    }

    /// <summary>Switches to the container's user and capabilities, in the order that keeps each
    /// step permitted: the bounding set is dropped while still root with CAP_SETPCAP; KEEPCAPS
    /// carries the permitted set across the uid change; capset then trims to what the spec
    /// grants; ambient capabilities last, as they must be in permitted and inheritable.
    /// Every call here affects only the calling thread except setres*id/setgroups (glibc
    /// broadcasts those), so the caller must exec from this same thread.</summary>
    public static void ApplyIdentity(IKernel k, Process p, int kernelLastCap)
    {
        var caps = p.Capabilities ?? new LinuxCapabilities();
        var bounding = Capabilities.Mask(caps.Bounding);
        for (var c = 0; c <= kernelLastCap; c++)
            if ((bounding & (1UL << c)) == 0) k.Prctl(L.PR_CAPBSET_DROP, (ulong)c);

        k.Prctl(L.PR_SET_KEEPCAPS, 1);
        k.SetGroups(p.User.AdditionalGids ?? []);
        k.SetResGid(p.User.Gid);
        k.SetResUid(p.User.Uid);
        k.Prctl(L.PR_SET_KEEPCAPS, 0);

        k.Capset(Capabilities.Mask(caps.Effective), Capabilities.Mask(caps.Permitted), Capabilities.Mask(caps.Inheritable));
        k.Prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_CLEAR_ALL);
        foreach (var a in caps.Ambient ?? [])
            k.Prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_RAISE, (ulong)Capabilities.Number(a));

        if (p.User.Umask is { } umask) k.Umask(umask);
        k.Chdir(string.IsNullOrEmpty(p.Cwd) ? "/" : p.Cwd);
        if (p.NoNewPrivileges) k.Prctl(L.PR_SET_NO_NEW_PRIVS, 1);
    }

    /// <summary>A spec asking for capabilities outside <paramref name="held"/> (the shim's bounding
    /// set, which the daemon's caps the spec by) would have capset fail with a bare EPERM; this
    /// names them instead.</summary>
    public static void CheckHeld(Process p, ulong held)
    {
        var caps = p.Capabilities ?? new LinuxCapabilities();
        var asked = Capabilities.Mask(caps.Effective) | Capabilities.Mask(caps.Permitted) | Capabilities.Mask(caps.Inheritable) | Capabilities.Mask(caps.Ambient);
        if ((asked & ~held) is var missing and not 0)
            throw new InvalidDataException($"process.capabilities: {Capabilities.Names(missing)} not in the runtime's bounding set (CapBnd {held:x16}), so the container cannot have them");
    }

    public const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>execvp's search, done before exec so a missing command is reported by name:
    /// args[0] with a slash is used as is, otherwise the first executable file on the spec's PATH.</summary>
    public static string ResolveExecutable(Process p, Func<string, bool> isExecutable)
    {
        if (p.Args.Count == 0) throw new InvalidDataException("process.args is empty");
        var name = p.Args[0];
        if (name.Contains('/')) return name;
        var path = p.Env?.FirstOrDefault(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..] ?? DefaultPath;
        foreach (var dir in path.Split(':'))
        {
            var candidate = Path.Combine(dir.Length == 0 ? "." : dir, name);
            if (isExecutable(candidate)) return candidate;
        }
        throw new FileNotFoundException($"exec {name}: executable file not found in $PATH ({path})");
    }
}
