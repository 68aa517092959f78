using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The OCI "cgroup" mount at /sys/fs/cgroup as mount steps, for the three host layouts,
/// from mountinfo texts like the hosts'. Run on the recording kernel: no root needed.</summary>
public class CgroupMountPlanTests
{
    private const string Root = "/b/rootfs";
    private const string Dest = Root + "/sys/fs/cgroup";
    private const string Ro = "ro|nosuid|nodev|noexec|relatime";

    private const string V1Mountinfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
        """;
    private const string HybridMountinfo = V1Mountinfo + "\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
    private const string V2Mountinfo = "30 23 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";

    private static Spec Spec(bool readOnly, bool cgroupNs = true) => new()
    {
        Root = new Root { Path = Root },
        Mounts =
        [
            new() { Destination = "/sys", Type = "sysfs", Source = "sysfs", Options = ["nosuid", "noexec", "nodev", "ro"] },
            new() { Destination = "/sys/fs/cgroup", Type = "cgroup", Source = "cgroup", Options = ["nosuid", "noexec", "nodev", "relatime", readOnly ? "ro" : "rw"] },
        ],
        Linux = new Linux { Namespaces = cgroupNs ? [new() { Type = "mount" }, new() { Type = "cgroup" }] : [new() { Type = "mount" }] },
    };

    /// <summary>The plan's steps from the cgroup mount up to the chdir before pivot_root.</summary>
    private static List<string> CgroupPart(bool readOnly, string mountinfo) =>
        [.. RootfsPlan.Build(Spec(readOnly), Root, cgroups: CgroupLayout.Parse(mountinfo)).Select(s => s.ToString()!)
            .SkipWhile(s => !s.StartsWith("mount sysfs", StringComparison.Ordinal)).Skip(1)
            .TakeWhile(s => !s.StartsWith("chdir", StringComparison.Ordinal))];

    [Fact]
    public void V1_TmpfsWithEachHierarchyMountedInTheCgroupNamespace_LinksForCoMounted_ThenReadOnly()
    {
        Assert.Equal(
        [
            "mkdir -p " + Dest,
            $"mount tmpfs {Dest} tmpfs nosuid|nodev|noexec|relatime mode=755",
            $"mkdir -p {Dest}/cpu,cpuacct",
            $"mount cgroup {Dest}/cpu,cpuacct cgroup {Ro} cpu,cpuacct",
            $"symlink {Dest}/cpu -> cpu,cpuacct",
            $"symlink {Dest}/cpuacct -> cpu,cpuacct",
            $"mkdir -p {Dest}/cpuset",
            $"mount cgroup {Dest}/cpuset cgroup {Ro} cpuset",
            $"mkdir -p {Dest}/memory",
            $"mount cgroup {Dest}/memory cgroup {Ro} memory",
            // name=systemd: the container is not placed there, so it is not shown (nor the host's root).
            $"mount none {Dest} - ro|nosuid|nodev|noexec|remount|bind|relatime",
        ], CgroupPart(readOnly: true, V1Mountinfo));
    }

    [Fact]
    public void Hybrid_AddsTheCgroup2MountNamedLikeTheHosts()
    {
        var plan = CgroupPart(readOnly: true, HybridMountinfo);
        var unified = plan.IndexOf($"mount cgroup2 {Dest}/unified cgroup2 {Ro}");
        Assert.True(unified > plan.IndexOf($"mount cgroup {Dest}/memory cgroup {Ro} memory"), string.Join('\n', plan));
        Assert.Equal($"mkdir -p {Dest}/unified", plan[unified - 1]);
        Assert.Equal($"mount none {Dest} - ro|nosuid|nodev|noexec|remount|bind|relatime", plan[^1]); // the tmpfs goes read-only last
    }

    [Fact]
    public void V2_OneCgroup2Mount()
    {
        Assert.Equal(["mkdir -p " + Dest, $"mount cgroup2 {Dest} cgroup2 {Ro}"], CgroupPart(readOnly: true, V2Mountinfo));
    }

    [Fact]
    public void Privileged_rw_LeavesEveryMountWritable()
    {
        var plan = CgroupPart(readOnly: false, HybridMountinfo);
        Assert.Contains($"mount cgroup {Dest}/memory cgroup nosuid|nodev|noexec|relatime memory", plan);
        Assert.Contains($"mount cgroup2 {Dest}/unified cgroup2 nosuid|nodev|noexec|relatime", plan);
        Assert.DoesNotContain(plan, s => s.Contains("remount", StringComparison.Ordinal) || s.StartsWith("mount cgroup", StringComparison.Ordinal) && s.Contains(" ro|", StringComparison.Ordinal));
    }

    [Fact]
    public void WithoutCgroupNamespace_IsRefused_RatherThanShowingTheHostsTree()
    {
        var e = Assert.Throws<InvalidDataException>(() => RootfsPlan.Build(Spec(true, cgroupNs: false), Root, cgroups: CgroupLayout.Parse(V1Mountinfo)));
        Assert.Contains("cgroup namespace", e.Message);
    }

    [Fact]
    public void UserNamespace_SameMounts_BelowTheAttachedRootfs_OnTheRecordingKernel()
    {
        using var delegated = new DelegatedMounts { Root = new FdHandle(-1) };
        var steps = RootfsPlan.Build(Spec(true), UserNamespaces.InitRootfs, delegated, CgroupLayout.Parse(HybridMountinfo));
        var k = new RecordingKernel();
        k.Files["/proc/self/cwd/sys"] = FileKind.Directory;
        k.Files["/proc/self/cwd/sys/fs"] = FileKind.Directory;
        k.Files["/proc/self/cwd/sys/fs/cgroup"] = FileKind.Directory;
        foreach (var step in steps.TakeWhile(s => s is not PivotRootStep)) step.Apply(k);
        const string d = "/proc/self/cwd/sys/fs/cgroup";
        Assert.Contains($"mount tmpfs {d} tmpfs nosuid|nodev|noexec|relatime mode=755", k.Calls);
        Assert.Contains($"mkdir {d}/memory 755", k.Calls);
        Assert.Contains($"mount cgroup {d}/memory cgroup {Ro} memory", k.Calls);
        Assert.Contains($"symlink {d}/cpu -> cpu,cpuacct", k.Calls);
        Assert.Contains($"mount cgroup2 {d}/unified cgroup2 {Ro}", k.Calls);
        Assert.Equal($"mount none {d} - ro|nosuid|nodev|noexec|remount|bind|relatime", k.Calls.Last(c => c.StartsWith("mount", StringComparison.Ordinal)));
    }
}
