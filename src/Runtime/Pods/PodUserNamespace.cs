using System.Diagnostics;
using System.Globalization;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Namespaces;

namespace CriRuntime.Pods;

/// <summary>A pod's user namespace (CRI NamespaceOption.userns_options, mode POD): one per pod,
/// pinned like its other namespaces (no process kept), with the pod's network, IPC and UTS
/// namespaces made inside it so that they are owned by it (the containers' root may then mount
/// sysfs, set the hostname...). Every container of the pod joins it by path.
///
/// The daemon is multi-threaded, so it cannot unshare(CLONE_NEWUSER) itself: the single-threaded
/// `criruntime-nsexec --hold` (src/NsExec/nsexec.c), next to the daemon's binary, does, waits
/// while we write the mappings and pin /proc/PID/ns/*, then exits.</summary>
public static class PodUserNamespace
{
    public const string BinaryName = "criruntime-nsexec";
    public static string BinaryPath => Path.Combine(AppContext.BaseDirectory, BinaryName);
    private const string Field = "config.linux.security_context.namespace_options.userns_options";

    /// <summary>The pod's mappings when it asks for a user namespace of its own (mode POD); null
    /// for the host's (NODE, or no userns_options). What kubelet sends and containerd accepts:
    /// exactly one uid and one gid mapping, each starting at container id 0, of non-zero length,
    /// not overflowing 32 bits. NODE must come without mappings.</summary>
    public static (IDMapping Uid, IDMapping Gid)? Validate(UserNamespace? userns, string field = Field)
    {
        if (userns is null) return null;
        switch (userns.Mode)
        {
            case NamespaceMode.Node:
                if (userns.Uids.Count > 0 || userns.Gids.Count > 0)
                    throw Fail.InvalidArgument($"{field}: mode NODE (the host's user namespace) takes no uids/gids mappings");
                return null;
            case NamespaceMode.Pod:
                return (One(userns.Uids, field + ".uids"), One(userns.Gids, field + ".gids"));
            default:
                throw Fail.InvalidArgument($"{field}.mode: {userns.Mode} is not supported (POD or NODE)");
        }
    }

    private static IDMapping One(IReadOnlyList<IDMapping> mappings, string field)
    {
        if (mappings.Count != 1) throw Fail.InvalidArgument($"{field}: exactly one mapping is supported, got {mappings.Count}");
        var m = mappings[0];
        if (m.ContainerId != 0) throw Fail.InvalidArgument($"{field}[0].container_id: must be 0, got {m.ContainerId}");
        if (m.Length == 0) throw Fail.InvalidArgument($"{field}[0].length: must not be 0");
        if ((ulong)m.HostId + m.Length > uint.MaxValue) throw Fail.InvalidArgument($"{field}[0]: host_id {m.HostId} + length {m.Length} overflows 32 bits");
        if (m.HostId == 0) throw Fail.InvalidArgument($"{field}[0].host_id: 0 would map the container's root to the host's");
        return m;
    }

    /// <summary>The pinned namespace files of a pod in its own user namespace.</summary>
    public sealed record Pins(string User, string Net, string Ipc, string Uts)
    {
        public IEnumerable<string> All => [Net, Ipc, Uts, User];
    }

    /// <summary>Creates the user namespace with the given mappings and, inside it, new network, IPC
    /// and UTS namespaces; pins all four below <paramref name="nsDir"/>. On failure nothing is left.</summary>
    public static async Task<Pins> CreateAsync(string nsDir, IDMapping uid, IDMapping gid, CancellationToken ct)
    {
        if (!File.Exists(BinaryPath))
            throw Fail.FailedPrecondition($"{Field}: POD needs {BinaryPath}, which is missing (`make build` builds it)");
        const int flags = 0x40000000 /* NET */ | 0x08000000 /* IPC */ | 0x04000000 /* UTS */;
        var psi = new ProcessStartInfo(BinaryPath)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--sync-in", "0", "--sync-out", "1", "--new-userns", "--unshare", flags.ToString("x", CultureInfo.InvariantCulture), "--hold" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw Fail.Unavailable($"cannot start {BinaryPath}");
        var pins = new Pins(Path.Combine(nsDir, "user"), Path.Combine(nsDir, "net"), Path.Combine(nsDir, "ipc"), Path.Combine(nsDir, "uts"));
        var pinned = new List<string>();
        try
        {
            var line = await p.StandardOutput.ReadLineAsync(ct);
            if (line != "userns") throw Failed(line);
            // We are root in the parent namespace: setgroups stays "allow" (the containers'
            // supplementary groups are set with setgroups(2)).
            await File.WriteAllTextAsync($"/proc/{p.Id}/uid_map", $"0 {uid.HostId} {uid.Length}\n", ct);
            await File.WriteAllTextAsync($"/proc/{p.Id}/gid_map", $"0 {gid.HostId} {gid.Length}\n", ct);
            await p.StandardInput.WriteLineAsync("mapped".AsMemory(), ct);
            await p.StandardInput.FlushAsync(ct);
            line = await p.StandardOutput.ReadLineAsync(ct);
            if (line != "init self") throw Failed(line);
            foreach (var (kind, path) in new[] { ("user", pins.User), ("net", pins.Net), ("ipc", pins.Ipc), ("uts", pins.Uts) })
            {
                NamespacePinner.PinExisting($"/proc/{p.Id}/ns/{kind}", path);
                pinned.Add(path);
            }
            p.StandardInput.Close(); // end of the hold
            await p.WaitForExitAsync(ct);
            return pins;
        }
        catch
        {
            foreach (var path in pinned) NamespacePinner.Unpin(path);
            if (!p.HasExited) p.Kill();
            throw;
        }
    }

    private static CriException Failed(string? line) => Fail.Unavailable(line is not null && line.StartsWith("error ", StringComparison.Ordinal)
        ? $"{BinaryName}: {line[6..]}"
        : $"{BinaryName} exited before the user namespace was made (said: {line ?? "nothing"})");
}
