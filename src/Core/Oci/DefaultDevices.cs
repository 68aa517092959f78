namespace CriRuntime.Oci;

/// <summary>The device nodes every container gets (runtime-spec config-linux.md "Default
/// Devices"), which the shim bind-mounts from the host's /dev unless the spec lists them: binding
/// works where mknod is refused (device cgroup, user namespaces) and gives the same node. The
/// daemon's restore plan hands CRIU the same list as external mounts.</summary>
public static class DefaultDevices
{
    /// <summary>Names below /dev.</summary>
    public static readonly IReadOnlyList<string> Names = ["null", "zero", "full", "random", "urandom", "tty"];
}
