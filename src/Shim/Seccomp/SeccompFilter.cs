using System.Runtime.InteropServices;
using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Seccomp;

/// <summary>Compiles the spec's linux.seccomp section with libseccomp (Debian libseccomp2) and
/// loads it on the calling thread, which then execs: libseccomp knows every architecture's
/// syscall numbers and the BPF quirks, which a hand-written compiler would have to relearn.</summary>
public static unsafe partial class SeccompFilter
{
    private const string Lib = "libseccomp.so.2";

    [LibraryImport(Lib, EntryPoint = "seccomp_init")] private static partial nint Init(uint defaultAction);
    [LibraryImport(Lib, EntryPoint = "seccomp_release")] private static partial void Release(nint ctx);
    [LibraryImport(Lib, EntryPoint = "seccomp_arch_add")] private static partial int ArchAdd(nint ctx, uint arch);
    [LibraryImport(Lib, EntryPoint = "seccomp_arch_native")] private static partial uint ArchNative();
    [LibraryImport(Lib, EntryPoint = "seccomp_attr_set")] private static partial int AttrSet(nint ctx, int attr, uint value);
    [LibraryImport(Lib, EntryPoint = "seccomp_syscall_resolve_name", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ResolveName(string name);
    [LibraryImport(Lib, EntryPoint = "seccomp_rule_add_array")]
    private static partial int RuleAddArray(nint ctx, uint action, int syscall, uint argCount, ArgCmp* args);
    [LibraryImport(Lib, EntryPoint = "seccomp_load")] private static partial int LoadFilter(nint ctx);

    [StructLayout(LayoutKind.Sequential)]
    private struct ArgCmp { public uint Arg; public int Op; public ulong A; public ulong B; }

    private const int SCMP_FLTATR_CTL_NNP = 3;

    public static uint Action(string name, uint? errnoRet) => name switch
    {
        "SCMP_ACT_KILL" or "SCMP_ACT_KILL_THREAD" => 0x00000000,
        "SCMP_ACT_KILL_PROCESS" => 0x80000000,
        "SCMP_ACT_TRAP" => 0x00030000,
        "SCMP_ACT_ERRNO" => 0x00050000 | ((errnoRet ?? Errno.EPERM) & 0xffff),
        "SCMP_ACT_TRACE" => 0x7ff00000 | ((errnoRet ?? Errno.EPERM) & 0xffff),
        "SCMP_ACT_LOG" => 0x7ffc0000,
        "SCMP_ACT_ALLOW" => 0x7fff0000,
        _ => throw new InvalidDataException($"linux.seccomp: unsupported action \"{name}\""),
    };

    public static uint Arch(string name) => name switch
    {
        "SCMP_ARCH_X86_64" => 0xC000003E,
        "SCMP_ARCH_X86" => 0x40000003,
        "SCMP_ARCH_X32" => 0x4000003E,
        "SCMP_ARCH_AARCH64" => 0xC00000B7,
        "SCMP_ARCH_ARM" => 0x40000028,
        _ => throw new InvalidDataException($"linux.seccomp: unsupported architecture \"{name}\""),
    };

    public static int Op(string name) => name switch
    {
        "SCMP_CMP_NE" => 1, "SCMP_CMP_LT" => 2, "SCMP_CMP_LE" => 3, "SCMP_CMP_EQ" => 4,
        "SCMP_CMP_GE" => 5, "SCMP_CMP_GT" => 6, "SCMP_CMP_MASKED_EQ" => 7,
        _ => throw new InvalidDataException($"linux.seccomp: unsupported operator \"{name}\""),
    };

    /// <summary>Loads libseccomp now, while the host's filesystem is still visible: the filter is
    /// built after pivot_root, when the container's rootfs (which has no libseccomp) is all there is.
    /// Once loaded, later calls resolve against the library in memory.</summary>
    public static void Preload() => ArchNative();

    /// <summary>Builds and loads the filter. Syscall names this libseccomp does not know are
    /// skipped, as runc does: profiles list syscalls of newer kernels.</summary>
    public static void Load(LinuxSeccomp spec)
    {
        var defaultAction = Action(spec.DefaultAction, spec.DefaultErrnoRet);
        var ctx = Init(defaultAction);
        if (ctx == 0) throw new InvalidOperationException("seccomp_init failed");
        try
        {
            // libseccomp sets no_new_privs on load unless told not to; the spec decides that.
            Check(AttrSet(ctx, SCMP_FLTATR_CTL_NNP, 0), "seccomp_attr_set(CTL_NNP)");
            foreach (var a in spec.Architectures ?? [])
            {
                var arch = Arch(a);
                if (arch == ArchNative()) continue; // present already
                var rc = ArchAdd(ctx, arch);
                if (rc < 0 && rc != -Errno.EEXIST) throw new KernelException("seccomp_arch_add", a, -rc);
            }
            foreach (var rule in spec.Syscalls ?? [])
            {
                var action = Action(rule.Action, rule.ErrnoRet);
                if (action == defaultAction) continue; // libseccomp refuses no-op rules
                foreach (var name in rule.Names)
                {
                    // -1 (__NR_SCMP_ERROR): unknown to this libseccomp. Other negative numbers are
                    // libseccomp's pseudo-syscalls (e.g. socketcall, only real on x86), which it
                    // maps per architecture, so they are kept.
                    var nr = ResolveName(name);
                    if (nr == -1) continue;
                    AddRule(ctx, action, nr, name, rule.Args ?? []);
                }
            }
            Check(LoadFilter(ctx), "seccomp_load");
        }
        finally { Release(ctx); }
    }

    private static void AddRule(nint ctx, uint action, int nr, string name, IReadOnlyList<LinuxSeccompArg> args)
    {
        var cmps = args.Select(a => new ArgCmp { Arg = a.Index, Op = Op(a.Op), A = a.Value, B = a.ValueTwo }).ToArray();
        // libseccomp cannot AND two conditions on the same argument; such conditions become one
        // rule each, i.e. an OR (runc does the same).
        var sameArgTwice = cmps.Select(c => c.Arg).Distinct().Count() != cmps.Length;
        if (sameArgTwice)
        {
            foreach (var c in cmps)
            {
                var one = c;
                Check(RuleAddArray(ctx, action, nr, 1, &one), "seccomp_rule_add " + name);
            }
            return;
        }
        fixed (ArgCmp* p = cmps) Check(RuleAddArray(ctx, action, nr, (uint)cmps.Length, p), "seccomp_rule_add " + name);
    }

    private static void Check(int rc, string what)
    {
        if (rc < 0) throw new KernelException(what, "", -rc);
    }
}
