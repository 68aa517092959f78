using System.Collections;
using System.Reflection;
using System.Text;
using System.Text.Json;
using CriRuntime.Oci;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>SpecReader reads config.json as System.Text.Json (OciJsonContext) does, or declines
/// and leaves it to it: compared on a spec with every member set to something other than its
/// default, on a containerd-shaped one, and on the rules (unknown members, nulls, comments).</summary>
public sealed class SpecReaderTests
{
    private static string Canonical(Spec spec) => Encoding.UTF8.GetString(SpecFile.Serialize(spec));

    private static void AssertReadsAsSystemTextJson(byte[] json)
    {
        var ours = SpecReader.TryRead(json);
        Assert.NotNull(ours); // read, not declined
        var theirs = JsonSerializer.Deserialize(json, OciJsonContext.Default.Spec)!;
        Assert.Equal(Canonical(theirs), Canonical(ours));
    }

    /// <summary>Every member of every type, none at its type's default (so a member the reader
    /// skipped would show as the default).</summary>
    internal static Spec EveryMember() => new()
    {
        OciVersion = "1.1.0",
        Hostname = "h",
        Domainname = "d",
        Annotations = new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" },
        Root = new Root { Path = "/r", Readonly = true },
        Mounts = [new Mount { Destination = "/m", Type = "bind", Source = "/s", Options = ["rbind", "ro"] }],
        Process = new Process
        {
            Terminal = true,
            ConsoleSize = new Box { Height = 24, Width = 80 },
            User = new User { Uid = 1000, Gid = 1001, Umask = 18, AdditionalGids = [10, 4294967295], Username = "u" },
            Args = ["sh", "-c", "echo \"ü\\n\""],
            Env = ["PATH=/bin", "X=y z"],
            Cwd = "/w",
            Capabilities = new LinuxCapabilities { Bounding = ["CAP_A"], Effective = ["CAP_B"], Inheritable = ["CAP_C"], Permitted = ["CAP_D"], Ambient = ["CAP_E"] },
            Rlimits = [new Rlimit { Type = "RLIMIT_NOFILE", Hard = ulong.MaxValue, Soft = 1024 }],
            NoNewPrivileges = true,
            ApparmorProfile = "p",
            OomScoreAdj = -999,
            SelinuxLabel = "l",
        },
        Linux = new Linux
        {
            Namespaces = [new LinuxNamespace { Type = "pid", Path = "/proc/1/ns/pid" }],
            UidMappings = [new IdMapping { ContainerId = 1, HostId = 100000, Size = 65536 }],
            GidMappings = [new IdMapping { ContainerId = 2, HostId = 200000, Size = 10 }],
            Devices = [new LinuxDevice { Type = "b", Path = "/dev/x", Major = 8, Minor = -1, FileMode = 438, Uid = 5, Gid = 6 }],
            CgroupsPath = "/pod/ctr",
            Sysctl = new Dictionary<string, string> { ["net.ipv4.ip_forward"] = "1" },
            RootfsPropagation = "rslave",
            MaskedPaths = ["/proc/kcore"],
            ReadonlyPaths = ["/proc/sys"],
            MountLabel = "m",
            Resources = new LinuxResources
            {
                Devices = [new LinuxDeviceCgroup { Allow = true, Type = "c", Major = 1, Minor = 3, Access = "rwm" }],
                Memory = new LinuxMemory { Limit = 1, Reservation = 2, Swap = -1, Kernel = 4, KernelTcp = 5, Swappiness = 6, DisableOomKiller = true, UseHierarchy = false },
                Cpu = new LinuxCpu { Shares = 7, Quota = -1, Period = 9, RealtimeRuntime = 10, RealtimePeriod = 11, Cpus = "0-1", Mems = "0", Idle = 1 },
                Pids = new LinuxPids { Limit = 42 },
                BlockIo = new LinuxBlockIo
                {
                    Weight = 100, LeafWeight = 200,
                    WeightDevice = [new LinuxWeightDevice { Major = 8, Minor = 1, Weight = 300, LeafWeight = 400 }],
                    ThrottleReadBpsDevice = [new LinuxThrottleDevice { Major = 8, Minor = 2, Rate = 1 }],
                    ThrottleWriteBpsDevice = [new LinuxThrottleDevice { Major = 8, Minor = 3, Rate = 2 }],
                    ThrottleReadIopsDevice = [new LinuxThrottleDevice { Major = 8, Minor = 4, Rate = 3 }],
                    ThrottleWriteIopsDevice = [new LinuxThrottleDevice { Major = 8, Minor = 5, Rate = 4 }],
                },
                HugepageLimits = [new LinuxHugepageLimit { PageSize = "2MB", Limit = 1 << 21 }],
                Network = new LinuxNetwork { ClassId = 3, Priorities = [new LinuxInterfacePriority { Name = "eth0", Priority = 5 }] },
                Unified = new Dictionary<string, string> { ["memory.high"] = "max" },
            },
            Seccomp = new LinuxSeccomp
            {
                DefaultAction = "SCMP_ACT_ERRNO",
                DefaultErrnoRet = 1,
                Architectures = ["SCMP_ARCH_X86_64"],
                Flags = ["SECCOMP_FILTER_FLAG_LOG"],
                Syscalls = [new LinuxSyscall
                {
                    Names = ["personality"], Action = "SCMP_ACT_KILL", ErrnoRet = 2,
                    Args = [new LinuxSeccompArg { Index = 1, Value = 8, ValueTwo = 9, Op = "SCMP_CMP_MASKED_EQ" }],
                }],
            },
        },
    };

    [Fact]
    public void TheSpecWithEveryMember_SetsEveryMember()
    {
        var unset = new List<string>();
        Walk(EveryMember(), "spec", unset);
        Assert.Empty(unset);
    }

    /// <summary>Each public property of an Oci record differs from a new instance's, and each list
    /// or map is non-empty, recursively.</summary>
    private static void Walk(object o, string at, List<string> unset)
    {
        var type = o.GetType();
        var fresh = Activator.CreateInstance(type);
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract"))
        {
            var value = p.GetValue(o);
            var name = $"{at}.{p.Name}";
            if (value is null || Equals(value, p.GetValue(fresh))) { unset.Add(name); continue; }
            if (value is string) continue;
            if (value is IEnumerable items)
            {
                var any = false;
                foreach (var item in items)
                {
                    any = true;
                    if (item is not null && item.GetType().Namespace == typeof(Spec).Namespace) Walk(item, name + "[]", unset);
                }
                if (!any) unset.Add(name);
            }
            else if (type.Namespace == value.GetType().Namespace) Walk(value, name, unset);
        }
    }

    [Fact]
    public void EveryMember_ReadsAsSystemTextJsonReadsIt() => AssertReadsAsSystemTextJson(SpecFile.Serialize(EveryMember()));

    [Fact]
    public void AContainerdShapedSpec_ReadsAsSystemTextJsonReadsIt() =>
        AssertReadsAsSystemTextJson(Encoding.UTF8.GetBytes(SpecParsingTests.Json));

    [Fact]
    public void UnknownMembers_Comments_TrailingCommas_Nulls_AndARepeatedMember_AsSystemTextJson() =>
        AssertReadsAsSystemTextJson(Encoding.UTF8.GetBytes("""
            // written by hand
            {
              "ociVersion": "1.0.0",
              "vendorThing": {"nested": [1, {"x": null}], "y": "z"},
              "process": {"user": null, "args": null, "env": ["A=1", null], "cwd": "/", "consoleSize": null, "oomScoreAdj": null},
              "root": {"path": "a", "path": "b",},
              "mounts": [null, {"destination": "/x", "options": null, "extra": [true, false]}],
              "annotations": {"k": null, "k2": "v", "k2": "v2"},
              "linux": {"resources": {"memory": {"limit": null, "swap": 5}, "cpu": null}, "seccomp": null, /* inline */ "namespaces": []},
              "hostname": null,
            }
            """));

    [Theory]
    [InlineData("""{"process": {"terminal": "yes"}}""")]
    [InlineData("""{"process": {"user": {"uid": -1}}}""")]
    [InlineData("""{"process": {"user": {"uid": "0"}}}""")]
    [InlineData("""{"process": {"user": {"uid": 1.5}}}""")]
    [InlineData("""{"linux": {"resources": {"pids": {"limit": null}}}}""")]
    [InlineData("""{"mounts": {"destination": "/x"}}""")]
    [InlineData("""{"hostname": 5}""")]
    [InlineData("""[]""")]
    [InlineData("""null""")]
    [InlineData("""{"hostname": "h"} {}""")]
    [InlineData("""{"hostname": "h" """)]
    [InlineData("")]
    public void WhatItDoesNotTake_IsLeftToSystemTextJson_WhichSaysWhatIsWrong(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        Assert.Null(SpecReader.TryRead(bytes));
        var e = Record.Exception(() => SpecFile.Parse(bytes));
        Assert.True(e is JsonException or InvalidDataException, $"{json}: {e?.GetType().Name} {e?.Message}");
    }

    [Fact]
    public void Load_ReadsTheBundlesConfigJson_AndNamesTheFileWhenItIsBad()
    {
        var bundle = Directory.CreateTempSubdirectory("spec-reader-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(bundle, SpecFile.ConfigName), SpecFile.Serialize(EveryMember()));
            Assert.Equal(Canonical(EveryMember()), Canonical(SpecFile.Load(bundle)));
            File.WriteAllText(Path.Combine(bundle, SpecFile.ConfigName), """{"process": {"terminal": "yes"}}""");
            var e = Assert.Throws<InvalidDataException>(() => SpecFile.Load(bundle));
            Assert.Contains(Path.Combine(bundle, SpecFile.ConfigName), e.Message);
            Assert.Contains("terminal", e.Message);
        }
        finally { Directory.Delete(bundle, recursive: true); }
    }
}
