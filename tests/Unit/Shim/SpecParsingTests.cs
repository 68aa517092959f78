using System.Text;
using CriRuntime.Oci;

namespace CriRuntime.Tests.Unit.Shim;

public class SpecParsingTests
{
    // Shaped like a containerd-generated config.json, with each spelling the spec does not
    // derive by camelCase (containerID, disableOOMKiller, blockIO, ...).
    internal const string Json = """
        {
          "ociVersion": "1.2.0",
          "process": {
            "terminal": false,
            "user": { "uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [10, 20] },
            "args": ["/bin/sh", "-c", "true"],
            "env": ["PATH=/bin"],
            "cwd": "/work",
            "capabilities": { "bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"], "ambient": [] },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024 }],
            "noNewPrivileges": true,
            "apparmorProfile": "cri-containerd.apparmor.d",
            "oomScoreAdj": 1000
          },
          "root": { "path": "rootfs", "readonly": true },
          "hostname": "pod",
          "mounts": [{ "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"] }],
          "annotations": { "io.kubernetes.cri.container-type": "container" },
          "linux": {
            "uidMappings": [{ "containerID": 0, "hostID": 100000, "size": 65536 }],
            "resources": {
              "devices": [{ "allow": false, "access": "rwm" }],
              "memory": { "limit": 134217728, "disableOOMKiller": false, "kernelTCP": 1 },
              "cpu": { "shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1" },
              "pids": { "limit": 100 },
              "blockIO": { "weight": 500, "throttleReadBpsDevice": [{ "major": 8, "minor": 0, "rate": 1048576 }], "throttleReadIOPSDevice": [{ "major": 8, "minor": 0, "rate": 10 }] },
              "hugepageLimits": [{ "pageSize": "2MB", "limit": 0 }],
              "network": { "classID": 7 },
              "unified": { "memory.high": "max" }
            },
            "cgroupsPath": "kubepods/pod1/abc",
            "namespaces": [{ "type": "pid" }, { "type": "network", "path": "/var/run/netns/cni-1" }],
            "sysctl": { "net.ipv4.ip_forward": "1" },
            "seccomp": {
              "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86_64"],
              "syscalls": [{ "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ" }] }]
            },
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "rootfsPropagation": "rslave",
            "devices": [{ "type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0 }]
          }
        }
        """;

    [Fact]
    public void Parse_ReadsEverySectionTheShimActsOn()
    {
        var spec = SpecFile.Parse(Encoding.UTF8.GetBytes(Json));
        var p = spec.Process!;
        Assert.Equal(1000u, p.User.Uid);
        Assert.Equal(18u, p.User.Umask);
        Assert.Equal([10u, 20u], p.User.AdditionalGids!);
        Assert.Equal(["/bin/sh", "-c", "true"], p.Args);
        Assert.Equal("/work", p.Cwd);
        Assert.Equal(["CAP_CHOWN"], p.Capabilities!.Bounding!);
        Assert.Equal(4096ul, p.Rlimits![0].Hard);
        Assert.True(p.NoNewPrivileges);
        Assert.Equal(1000, p.OomScoreAdj);
        Assert.Equal("cri-containerd.apparmor.d", p.ApparmorProfile);
        Assert.True(spec.Root!.Readonly);
        Assert.Equal("pod", spec.Hostname);

        var l = spec.Linux!;
        Assert.Equal(100000u, l.UidMappings![0].HostId);
        Assert.Equal(134217728, l.Resources!.Memory!.Limit);
        Assert.False(l.Resources.Memory.DisableOomKiller);
        Assert.Equal(1, l.Resources.Memory.KernelTcp);
        Assert.Equal(500, l.Resources.BlockIo!.Weight!.Value);
        Assert.Equal(1048576ul, l.Resources.BlockIo.ThrottleReadBpsDevice![0].Rate);
        Assert.Equal(10ul, l.Resources.BlockIo.ThrottleReadIopsDevice![0].Rate);
        Assert.Equal(7u, l.Resources.Network!.ClassId);
        Assert.Equal("max", l.Resources.Unified!["memory.high"]);
        Assert.Equal("kubepods/pod1/abc", l.CgroupsPath);
        Assert.Equal("/var/run/netns/cni-1", l.Namespaces![1].Path);
        Assert.Equal(38u, l.Seccomp!.DefaultErrnoRet);
        Assert.Equal("SCMP_CMP_EQ", l.Seccomp.Syscalls![0].Args![0].Op);
        Assert.Equal(438u, l.Devices![0].FileMode);
        Assert.Equal("rslave", l.RootfsPropagation);
    }

    [Fact]
    public void Serialize_UsesTheSpecsJsonNames_AndOmitsNulls()
    {
        var json = Encoding.UTF8.GetString(SpecFile.Serialize(SpecFile.Parse(Encoding.UTF8.GetBytes(Json))));
        foreach (var name in new[] { "\"ociVersion\"", "\"containerID\"", "\"hostID\"", "\"disableOOMKiller\"", "\"kernelTCP\"",
                     "\"blockIO\"", "\"throttleReadIOPSDevice\"", "\"classID\"", "\"additionalGids\"", "\"oomScoreAdj\"",
                     "\"noNewPrivileges\"", "\"cgroupsPath\"", "\"valueTwo\"", "\"readonly\"", "\"maskedPaths\"" })
            Assert.Contains(name, json);
        Assert.DoesNotContain("null", json);
    }

    [Fact]
    public void Load_NamesTheFile_WhenJsonIsBroken()
    {
        var dir = Directory.CreateTempSubdirectory("spec");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "config.json"), "{ \"process\": [ }");
            var e = Assert.Throws<InvalidDataException>(() => SpecFile.Load(dir.FullName));
            Assert.Contains("config.json", e.Message);
        }
        finally { dir.Delete(true); }
    }
}
