using CriRuntime.Oci;
using CriRuntime.Shim.Seccomp;

namespace CriRuntime.Tests.Unit.Shim;

public class SeccompProfileTests
{
    private static IEnumerable<string> Allowed(LinuxSeccomp p) =>
        p.Syscalls!.Where(s => s.Action == "SCMP_ACT_ALLOW" && s.Args is null).SelectMany(s => s.Names);

    [Fact]
    public void Default_IsAnAllowList_ThatFailsEverythingElseWithEperm()
    {
        var p = DefaultSeccompProfile.Build(["CAP_CHOWN"]);
        Assert.Equal("SCMP_ACT_ERRNO", p.DefaultAction);
        Assert.Equal(1u, p.DefaultErrnoRet);
        Assert.Equal(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], p.Architectures!);
        var allowed = Allowed(p).ToHashSet();
        foreach (var s in new[] { "read", "write", "execve", "openat", "futex", "exit_group", "arch_prctl" }) Assert.Contains(s, allowed);
        foreach (var s in new[] { "mount", "umount2", "unshare", "setns", "keyctl", "add_key", "bpf", "reboot", "init_module" }) Assert.DoesNotContain(s, allowed);
    }

    [Fact]
    public void Default_WithoutSysAdmin_ForbidsNamespaceFlagsOnClone_AndAnswersClone3WithEnosys()
    {
        var p = DefaultSeccompProfile.Build([]);
        var clone = Assert.Single(p.Syscalls!, s => s.Names.SequenceEqual(["clone"]));
        var arg = Assert.Single(clone.Args!);
        Assert.Equal(("SCMP_CMP_MASKED_EQ", 0x7E020000ul, 0ul), (arg.Op, arg.Value, arg.ValueTwo));
        var clone3 = Assert.Single(p.Syscalls!, s => s.Names.SequenceEqual(["clone3"]));
        Assert.Equal(("SCMP_ACT_ERRNO", 38u), (clone3.Action, clone3.ErrnoRet!.Value));
    }

    [Fact]
    public void Default_WithSysAdmin_AllowsMountAndUnshare()
    {
        var allowed = Allowed(DefaultSeccompProfile.Build(["CAP_SYS_ADMIN"])).ToHashSet();
        Assert.Contains("mount", allowed);
        Assert.Contains("unshare", allowed);
        Assert.Contains("clone3", allowed);
    }

    [Theory]
    [InlineData("SCMP_ACT_ALLOW", null, 0x7fff0000u)]
    [InlineData("SCMP_ACT_ERRNO", null, 0x00050001u)]
    [InlineData("SCMP_ACT_ERRNO", 38u, 0x00050026u)]
    [InlineData("SCMP_ACT_KILL_PROCESS", null, 0x80000000u)]
    [InlineData("SCMP_ACT_LOG", null, 0x7ffc0000u)]
    public void Actions_MapToLibseccompValues(string name, uint? errno, uint expected)
    {
        Assert.Equal(expected, SeccompFilter.Action(name, errno));
    }
}
