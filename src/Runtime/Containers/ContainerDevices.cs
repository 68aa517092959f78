using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Oci;

namespace CriRuntime.Containers;

/// <summary>ContainerConfig.devices → the OCI device nodes (created by the shim in the
/// container's /dev) and device cgroup rules: everything denied, then runc's default set (the
/// nodes every container has, and mknod of any node), then each requested device with its
/// permissions. Privileged containers get every device allowed. The rules are enforced by the
/// v1 devices controller; on cgroup v2 they would need an eBPF program, which is not
/// implemented (see CgroupResources.Devices).</summary>
public static class ContainerDevices
{
    /// <summary>(type and mode bits, major, minor) of a host path, or null when it does not exist.</summary>
    public delegate (uint Mode, uint Major, uint Minor)? Stat(string path);

    private const uint S_IFMT = 0xF000, S_IFCHR = 0x2000, S_IFBLK = 0x6000;

    private static readonly LinuxDeviceCgroup[] Defaults =
    [
        new() { Allow = true, Type = "c", Access = "m" },
        new() { Allow = true, Type = "b", Access = "m" },
        new() { Allow = true, Type = "c", Major = 1, Minor = 3, Access = "rwm" },  // null
        new() { Allow = true, Type = "c", Major = 1, Minor = 5, Access = "rwm" },  // zero
        new() { Allow = true, Type = "c", Major = 1, Minor = 7, Access = "rwm" },  // full
        new() { Allow = true, Type = "c", Major = 1, Minor = 8, Access = "rwm" },  // random
        new() { Allow = true, Type = "c", Major = 1, Minor = 9, Access = "rwm" },  // urandom
        new() { Allow = true, Type = "c", Major = 5, Minor = 0, Access = "rwm" },  // tty
        new() { Allow = true, Type = "c", Major = 5, Minor = 2, Access = "rwm" },  // ptmx
        new() { Allow = true, Type = "c", Major = 136, Access = "rwm" },           // pts/*
    ];

    public static (List<LinuxDevice> Nodes, List<LinuxDeviceCgroup> Rules) Map(IReadOnlyList<Device> devices, bool privileged, Stat stat)
    {
        var nodes = new List<LinuxDevice>();
        List<LinuxDeviceCgroup> rules = privileged
            ? [new() { Allow = true, Type = "a", Access = "rwm" }]
            : [new() { Allow = false, Type = "a", Access = "rwm" }, .. Defaults];
        for (var i = 0; i < devices.Count; i++)
        {
            var d = devices[i];
            if (d.HostPath.Length == 0) throw Fail.InvalidArgument($"config.devices[{i}].host_path: required");
            if (!d.HostPath.StartsWith('/')) throw Fail.InvalidArgument($"config.devices[{i}].host_path: '{d.HostPath}' must be absolute");
            var containerPath = d.ContainerPath.Length > 0 ? d.ContainerPath : d.HostPath;
            if (!containerPath.StartsWith('/') || containerPath.Split('/').Contains(".."))
                throw Fail.InvalidArgument($"config.devices[{i}].container_path: '{containerPath}' must be absolute, without '..'");
            var access = d.Permissions.Length > 0 ? d.Permissions : "rwm";
            if (!access.All(ch => ch is 'r' or 'w' or 'm') || access.Distinct().Count() != access.Length)
                throw Fail.InvalidArgument($"config.devices[{i}].permissions: '{d.Permissions}' must be letters of \"rwm\"");
            var info = stat(d.HostPath) ?? throw Fail.InvalidArgument($"config.devices[{i}].host_path: '{d.HostPath}' does not exist");
            var type = (info.Mode & S_IFMT) switch
            {
                S_IFCHR => "c",
                S_IFBLK => "b",
                _ => throw Fail.InvalidArgument($"config.devices[{i}].host_path: '{d.HostPath}' is not a character or block device"),
            };
            nodes.Add(new LinuxDevice { Type = type, Path = containerPath, Major = info.Major, Minor = info.Minor, FileMode = info.Mode & 0xFFF, Uid = 0, Gid = 0 });
            if (!privileged) rules.Add(new LinuxDeviceCgroup { Allow = true, Type = type, Major = info.Major, Minor = info.Minor, Access = access });
        }
        return (nodes, rules);
    }
}
