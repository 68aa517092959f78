using CriRuntime.Checkpoint;
using CriRuntime.Oci;

namespace CriRuntime.Tests.Unit.Checkpoint;

public class DumpPlanTests
{
    private const string MountInfo = """
        520 480 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
        521 520 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
        522 520 0:56 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
        523 522 0:57 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
        524 520 254:1 /var/lib/criruntime/pods/p/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
        525 520 254:1 /var/lib/kubelet/pods/u/volumes/my\040data /data rw,relatime - ext4 /dev/vda1 rw
        526 521 0:5 /null /proc/kcore ro,nosuid - devtmpfs udev rw,size=1k
        527 521 0:55 /sys /proc/sys ro,relatime - proc proc rw
        528 520 0:27 / /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw
        529 522 0:58 / /dev/shm rw - tmpfs shm rw
        """;

    private static Spec SpecWith(params Mount[] mounts) => new()
    {
        Process = new Process(),
        Mounts = mounts,
        Linux = new Linux
        {
            Namespaces =
            [
                new LinuxNamespace { Type = "pid" },
                new LinuxNamespace { Type = "network", Path = "/run/criruntime/ns/net/p" },
                new LinuxNamespace { Type = "ipc", Path = "/run/criruntime/ns/ipc/p" },
                new LinuxNamespace { Type = "mount" },
            ],
        },
    };

    [Fact]
    public void ParseMountInfo_ReadsMountPointRootAndType_DecodingOctalEscapes()
    {
        var m = DumpPlan.ParseMountInfo(MountInfo);
        Assert.Equal(10, m.Count);
        Assert.Equal(new MountInfo("/data", "/var/lib/kubelet/pods/u/volumes/my data", "ext4", "rw"), m[5]);
        Assert.Equal(new MountInfo("/", "/", "overlay", "rw,lowerdir=/l,upperdir=/u,workdir=/w"), m[0]);
        Assert.Equal(new MountInfo("/dev", "/", "tmpfs", "rw,size=65536k,mode=755"), m[2]);
    }

    [Fact]
    public void ExternalMounts_AreSpecBinds_MountsOfFileSystemsFromOutside_AndTmpfsUnderItsOwnKey_NotProcOrCgroups()
    {
        var spec = SpecWith(
            new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/x/hosts", Options = ["rbind", "rw"] },
            new Mount { Destination = "/dev/shm/", Type = "bind", Source = "/x/shm", Options = ["rbind"] },
            new Mount { Destination = "/proc", Type = "proc", Source = "proc" });

        var external = DumpPlan.ExternalMounts(spec, DumpPlan.ParseMountInfo(MountInfo));

        // /dev/shm is a bind here (the spec's): its source is outside, not a tmpfs of the container's.
        Assert.Equal([("/data", "/data"), ("/dev", "tmpfs/dev"), ("/dev/shm", "/dev/shm"), ("/etc/hosts", "/etc/hosts"), ("/proc/kcore", "/proc/kcore")], external);
    }

    /// <summary>A masked directory is an empty read-only tmpfs: declared external (a restore binds
    /// an empty directory there) instead of dumped through tar and gzip inside the frozen time;
    /// so is the bind of an empty directory a restore left there, found to be a directory. A
    /// masked file (/dev/null over it) keeps its own key, and a tmpfs that is not masked is
    /// declared under the tmpfs key (its content captured by the daemon).</summary>
    [Fact]
    public void MaskedDirectories_AreExternalUnderTheirOwnKey_ThoughTmpfs_AndMaskedFilesKeepTheirs()
    {
        var spec = SpecWith() with
        {
            Linux = new Linux { MaskedPaths = ["/proc/acpi", "/proc/kcore", "/sys/firmware/", "/proc/scsi"] },
        };
        var mounts = DumpPlan.ParseMountInfo("""
            520 480 0:52 / / rw,relatime - overlay overlay rw
            521 520 0:55 / /proc rw - proc proc rw
            526 521 0:5 /null /proc/kcore ro,nosuid - devtmpfs udev rw
            530 521 0:60 / /proc/acpi ro,relatime - tmpfs tmpfs ro
            531 520 0:61 / /sys/firmware ro,relatime - tmpfs tmpfs ro
            532 521 254:1 /var/lib/criruntime/containers/c/bundle/masked-empty /proc/scsi ro - ext4 /dev/vda1 rw
            529 520 0:58 / /dev/shm rw - tmpfs shm rw
            """);

        var external = DumpPlan.ExternalMounts(spec, mounts, isDirectory: p => p == "/proc/scsi");

        Assert.Equal([("/dev/shm", "tmpfs/dev/shm"), ("/proc/acpi", "masked-dir/proc/acpi"), ("/proc/kcore", "/proc/kcore"), ("/proc/scsi", "masked-dir/proc/scsi"),
            ("/sys/firmware", "masked-dir/sys/firmware")], external);
        var args = string.Join(' ', DumpPlan.Args(1, "/img", "/work", "/rootfs", spec, mounts, _ => null, isDirectory: p => p == "/proc/scsi"));
        Assert.Contains("--external mnt[/proc/acpi]:masked-dir/proc/acpi", args);
        Assert.Contains("--external mnt[/dev/shm]:tmpfs/dev/shm", args);
        Assert.Equal([mounts[^1]], TmpfsContent.Declared(DumpPlan.ExternalMounts(spec, mounts, isDirectory: p => p == "/proc/scsi"), mounts));
    }

    [Fact]
    public void Args_DumpTheTreeLeavingItRunning_WithThePodsNetworkNamespaceExternal()
    {
        var spec = SpecWith(new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/x/hosts", Options = ["rbind"] });
        var args = DumpPlan.Args(4242, "/img", "/work", "/rootfs", spec, DumpPlan.ParseMountInfo(MountInfo),
            kind => kind == "net" ? 4026532290UL : 4026531836UL);

        var text = string.Join(' ', args);
        Assert.StartsWith("dump --tree 4242 --images-dir /img --work-dir /work --log-file dump.log", text);
        Assert.Contains("--root /rootfs", text);
        Assert.Contains("--leave-running", args);
        Assert.Contains("--tcp-established", args);
        // CRIU's connection lock through libnftables, in its own process: the iptables default
        // execs iptables-restore at lock and unlock, ~60 ms of the container's frozen time here.
        Assert.Contains("--network-lock nftables", text);
        // A migration's dump: the pod's links are down already (or its connections closed at the
        // restore), CRIU locks nothing itself.
        var migrating = string.Join(' ', DumpPlan.Args(4242, "/img", "/work", "/rootfs", spec, DumpPlan.ParseMountInfo(MountInfo),
            kind => kind == "net" ? 4026532290UL : 4026531836UL, networkLockedOutside: true));
        Assert.Contains("--tcp-established --network-lock skip", migrating);
        Assert.Contains("--external net[4026532290]:extRootNetNS", text);
        Assert.Contains("--external mnt[/etc/hosts]:/etc/hosts", text);
        // The container's own pid namespace is dumped, not external; ipc has no external form.
        Assert.DoesNotContain("pid[", text);
        Assert.DoesNotContain("ipc", text);
        Assert.DoesNotContain("--shell-job", args);
    }

    [Fact]
    public void Args_ForATerminalContainer_AddShellJob_AndForAPodSharedPidNamespace_DeclareItExternal()
    {
        var spec = SpecWith() with
        {
            Process = new Process { Terminal = true },
            Linux = new Linux { Namespaces = [new LinuxNamespace { Type = "pid", Path = "/proc/77/ns/pid" }] },
        };
        var args = DumpPlan.Args(1, "/img", "/work", "/rootfs", spec, [], kind => kind == "pid" ? 99UL : null);

        Assert.Contains("--shell-job", args);
        Assert.Contains("pid[99]:extRootPidNS", args);
    }

    [Fact]
    public void Args_ForALazyDump_LeaveThePagesOut_AndServeThemOnTheGivenAddressAndPort()
    {
        var args = DumpPlan.Args(1, "/img", "/work", "/rootfs", SpecWith(), [], _ => null, pageServer: ("10.0.0.5", 40123));

        Assert.Contains("--lazy-pages", args);
        Assert.Equal("10.0.0.5", args[args.ToList().IndexOf("--address") + 1]);
        Assert.Equal("40123", args[args.ToList().IndexOf("--port") + 1]);
        Assert.DoesNotContain("--lazy-pages", DumpPlan.Args(1, "/img", "/work", "/rootfs", SpecWith(), [], _ => null));
    }
}
