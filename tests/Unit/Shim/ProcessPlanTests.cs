using CriRuntime.Oci;
using CriRuntime.Shim.Container;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Shim;

public class ProcessPlanTests
{
    [Theory]
    [InlineData("CAP_CHOWN", 0)]
    [InlineData("CAP_KILL", 5)]
    [InlineData("CAP_NET_BIND_SERVICE", 10)]
    [InlineData("CAP_NET_RAW", 13)]
    [InlineData("CAP_SYS_ADMIN", 21)]
    [InlineData("CAP_MKNOD", 27)]
    [InlineData("CAP_AUDIT_WRITE", 29)]
    [InlineData("CAP_SETFCAP", 31)]
    [InlineData("CAP_BPF", 39)]
    [InlineData("CAP_CHECKPOINT_RESTORE", 40)]
    public void CapabilityNames_MapToKernelNumbers(string name, int number)
    {
        Assert.Equal(number, Capabilities.Number(name));
        Assert.Equal(name, Capabilities.Name(number));
    }

    [Fact]
    public void UnknownCapability_IsAnError_NotSilentlyDropped()
    {
        var e = Assert.Throws<InvalidDataException>(() => Capabilities.Mask(["CAP_CHOWN", "CAP_TYPO"]));
        Assert.Contains("CAP_TYPO", e.Message);
    }

    [Fact]
    public void Mask_SetsOneBitPerCapability()
    {
        Assert.Equal((1UL << 0) | (1UL << 5) | (1UL << 10), Capabilities.Mask(["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]));
    }

    [Fact]
    public void Identity_DropsBoundingWhileRoot_KeepsCapsAcrossSetuid_ThenCapsetAmbientAndNoNewPrivs()
    {
        var p = new Process
        {
            User = new User { Uid = 1000, Gid = 2000, AdditionalGids = [3000], Umask = 0x12 },
            Args = ["/bin/true"],
            Cwd = "/work",
            NoNewPrivileges = true,
            Capabilities = new LinuxCapabilities
            {
                Bounding = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                Effective = ["CAP_NET_BIND_SERVICE"],
                Permitted = ["CAP_NET_BIND_SERVICE"],
                Inheritable = ["CAP_NET_BIND_SERVICE"],
                Ambient = ["CAP_NET_BIND_SERVICE"],
            },
        };
        var k = new RecordingKernel();
        ProcessPlan.ApplyIdentity(k, p, kernelLastCap: 40);

        var drops = k.Calls.Where(c => c.StartsWith($"prctl {L.PR_CAPBSET_DROP} ", StringComparison.Ordinal)).ToList();
        Assert.Equal(41 - 2, drops.Count);
        Assert.DoesNotContain($"prctl {L.PR_CAPBSET_DROP} 0", drops);
        Assert.DoesNotContain($"prctl {L.PR_CAPBSET_DROP} 10", drops);
        Assert.Equal(
        [
            $"prctl {L.PR_SET_KEEPCAPS} 1",
            "setgroups 3000",
            "setresgid 2000",
            "setresuid 1000",
            $"prctl {L.PR_SET_KEEPCAPS} 0",
            "capset eff=0x400 prm=0x400 inh=0x400",
            $"prctl {L.PR_CAP_AMBIENT} {L.PR_CAP_AMBIENT_CLEAR_ALL}",
            $"prctl {L.PR_CAP_AMBIENT} {L.PR_CAP_AMBIENT_RAISE} 10",
            "umask 22",
            "chdir /work",
            $"prctl {L.PR_SET_NO_NEW_PRIVS} 1",
        ], k.Calls.Skip(drops.Count));
    }

    [Fact]
    public void Limits_EpermOnHardRaise_AndEaccesOnNegativeOomScoreAdj_AreWarnings()
    {
        var p = new Process
        {
            Rlimits = [new Rlimit { Type = "RLIMIT_NOFILE", Soft = 1024, Hard = 1048576 }, new Rlimit { Type = "RLIMIT_CORE", Soft = 0, Hard = 0 }],
            OomScoreAdj = -998,
        };
        var k = new RecordingKernel();
        k.Failures["setrlimit 7 "] = Errno.EPERM;
        k.Failures["write /proc/self/oom_score_adj"] = Errno.EACCES;
        var warnings = new List<string>();
        ProcessPlan.ApplyLimits(k, p, warnings.Add);
        Assert.Equal(["setrlimit 4 0 0"], k.Calls);
        Assert.Equal(2, warnings.Count);
        Assert.Contains("RLIMIT_NOFILE", warnings[0]);
        Assert.Contains("oom_score_adj -998", warnings[1]);
    }

    [Fact]
    public void Limits_OtherErrors_Fail()
    {
        var k = new RecordingKernel();
        k.Failures["setrlimit"] = Errno.EINVAL;
        Assert.Throws<KernelException>(() => ProcessPlan.ApplyLimits(k, new Process { Rlimits = [new Rlimit { Type = "RLIMIT_NOFILE", Soft = 2, Hard = 1 }] }, _ => { }));
        Assert.Throws<InvalidDataException>(() => ProcessPlan.ApplyLimits(new RecordingKernel(), new Process { Rlimits = [new Rlimit { Type = "RLIMIT_BOGUS" }] }, _ => { }));
    }

    [Fact]
    public void ResolveExecutable_SearchesTheSpecsPath()
    {
        var p = new Process { Args = ["sh"], Env = ["PATH=/usr/bin:/bin"] };
        Assert.Equal("/bin/sh", ProcessPlan.ResolveExecutable(p, f => f == "/bin/sh"));
        Assert.Equal("./x", ProcessPlan.ResolveExecutable(p with { Args = ["./x"] }, _ => false));
        var e = Assert.Throws<FileNotFoundException>(() => ProcessPlan.ResolveExecutable(p, _ => false));
        Assert.Contains("sh", e.Message);
    }

    [Fact]
    public void KernelException_NamesOperationPathAndErrno()
    {
        var e = new KernelException("mount", "/proc", Errno.EPERM);
        Assert.Contains("mount /proc", e.Message);
        Assert.Contains("errno 1", e.Message);
    }

    [Fact]
    public void CheckHeld_NamesTheCapabilitiesTheRuntimeLacks()
    {
        const ulong withoutSysResource = 0x1fffeffffff;
        var p = new Process { Args = ["x"], User = new User(), Capabilities = new LinuxCapabilities { Permitted = ["CAP_CHOWN", "CAP_SYS_RESOURCE"], Effective = ["CAP_CHOWN"] } };
        var e = Assert.Throws<InvalidDataException>(() => ProcessPlan.CheckHeld(p, withoutSysResource));
        Assert.Contains("CAP_SYS_RESOURCE", e.Message);
        Assert.DoesNotContain("CAP_CHOWN", e.Message);
        ProcessPlan.CheckHeld(p, ulong.MaxValue);
    }
}
