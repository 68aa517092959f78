using CriRuntime.Cri.V1;
using CriRuntime.Pods;

namespace CriRuntime.Namespaces;

/// <summary>What the pod controller does with namespaces: pin new ones (or one a process has),
/// run code inside a pinned one, unpin. <see cref="HostNamespaces"/> is the kernel's; unit tests
/// use a fake.</summary>
public interface IPodNamespaces
{
    /// <summary>A new namespace of <paramref name="kind"/> pinned at <paramref name="path"/>;
    /// <paramref name="inside"/> runs in it before the pin is made.</summary>
    void Pin(NamespaceKind kind, string path, Action? inside = null);
    void PinExisting(string source, string path);
    void RunIn(NamespaceKind kind, string path, Action action);
    /// <summary>Idempotent: a path that is not pinned (or does not exist) is fine.</summary>
    void Unpin(string path);
    /// <summary>In the calling thread's UTS namespace (called inside <see cref="Pin"/> or <see cref="RunIn"/>).</summary>
    void SetHostname(string hostname);
    /// <summary>In the calling thread's namespaces (called inside <see cref="Pin"/> or <see cref="RunIn"/>).</summary>
    void WriteSysctl(string key, string value);
    /// <summary>A user namespace with these mappings and net/ipc/uts namespaces owned by it,
    /// all pinned below <paramref name="nsDir"/>; on failure nothing is left.</summary>
    Task<PodUserNamespace.Pins> CreateUserNamespaceAsync(string nsDir, IDMapping uid, IDMapping gid, CancellationToken ct);
}

/// <summary>The host kernel's namespaces (<see cref="NamespacePinner"/>, <see cref="PodUserNamespace"/>).</summary>
public sealed class HostNamespaces : IPodNamespaces
{
    public void Pin(NamespaceKind kind, string path, Action? inside = null) => NamespacePinner.Pin(kind, path, inside);
    public void PinExisting(string source, string path) => NamespacePinner.PinExisting(source, path);
    public void RunIn(NamespaceKind kind, string path, Action action) => NamespacePinner.RunIn(kind, path, action);
    public void Unpin(string path) => NamespacePinner.Unpin(path);
    public void SetHostname(string hostname) => NamespacePinner.SetHostname(hostname);
    public void WriteSysctl(string key, string value) => NamespacePinner.WriteSysctl(key, value);
    public Task<PodUserNamespace.Pins> CreateUserNamespaceAsync(string nsDir, IDMapping uid, IDMapping gid, CancellationToken ct) =>
        PodUserNamespace.CreateAsync(nsDir, uid, gid, ct);
}
