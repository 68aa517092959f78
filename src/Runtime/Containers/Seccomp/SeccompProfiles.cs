using System.Text.Json;
using System.Text.Json.Nodes;
using CriRuntime.Oci;

namespace CriRuntime.Containers.Seccomp;

/// <summary>Seccomp profiles as the CRI names them: the runtime's default, and localhost files
/// in the OCI or Docker JSON format.</summary>
public static class SeccompProfiles
{
    /// <summary>Reads a profile file. Docker's format is the OCI one plus "archMap" (architectures
    /// with their sub-architectures) and "includes"/"excludes" conditions, which are dropped here
    /// together with the rules they guard, so an unconditional rule is never widened.</summary>
    public static LinuxSeccomp Parse(byte[] json)
    {
        var root = JsonNode.Parse(json)?.AsObject() ?? throw new JsonException("empty seccomp profile");
        if (root["architectures"] is null && root["archMap"] is JsonArray archMap)
        {
            var archs = new JsonArray();
            foreach (var entry in archMap)
            {
                if (entry?["architecture"]?.GetValue<string>() is { } a) archs.Add((JsonNode)JsonValue.Create(a));
                if (entry?["subArchitectures"] is JsonArray subs)
                    foreach (var s in subs) if (s?.GetValue<string>() is { } sub) archs.Add((JsonNode)JsonValue.Create(sub));
            }
            root["architectures"] = archs;
        }
        root.Remove("archMap");
        if (root["syscalls"] is JsonArray syscalls)
        {
            var kept = new JsonArray();
            foreach (var rule in syscalls)
            {
                if (rule is not JsonObject o) continue;
                var conditional = (o["includes"] is JsonObject inc && inc.Count > 0) || (o["excludes"] is JsonObject exc && exc.Count > 0);
                if (conditional) continue;
                o.Remove("includes");
                o.Remove("excludes");
                o.Remove("comment");
                kept.Add(o.DeepClone());
            }
            root["syscalls"] = kept;
        }
        if (root["defaultAction"] is null) throw new JsonException("seccomp profile has no defaultAction");
        return root.Deserialize(OciJsonContext.Default.LinuxSeccomp) ?? throw new JsonException("unreadable seccomp profile");
    }

    // Declared before Default: static initialisers run in textual order.
    private static readonly string[] AllowedSyscalls =
    [
        "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset", "chdir", "chmod",
        "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
        "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range",
        "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
        "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
        "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
        "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
        "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
        "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
        "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
        "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
        "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
        "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
        "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
        "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
        "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
        "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
        "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr",
        "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
        "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
        "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
        "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64",
        "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64",
        "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
        "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
        "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
        "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
        "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
        "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
        "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
        "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
        "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
        "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32",
        "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
        "sigreturn", "socket", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
        "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
        "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
        "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill",
        "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
        "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
        "arch_prctl", "modify_ldt", "chroot",
    ];

    /// <summary>The RuntimeDefault profile: deny by default (EPERM), allow the system calls ordinary
    /// programs need. The same allow-list the common container runtimes ship, minus the calls
    /// that manage namespaces, mounts, keys, kernel modules, clocks and tracing (unshare, setns,
    /// mount, keyctl, add_key, bpf, ptrace, ...), which need capabilities a container lacks anyway.</summary>
    public static LinuxSeccomp Default { get; } = new()
    {
        DefaultAction = "SCMP_ACT_ERRNO",
        DefaultErrnoRet = 1,
        Architectures = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        Syscalls =
        [
            new LinuxSyscall { Action = "SCMP_ACT_ALLOW", Names = AllowedSyscalls },
            // personality: only the harmless personas.
            new LinuxSyscall
            {
                Action = "SCMP_ACT_ALLOW", Names = ["personality"],
                Args = [new LinuxSeccompArg { Index = 0, Value = 0x0, Op = "SCMP_CMP_EQ" }],
            },
            new LinuxSyscall
            {
                Action = "SCMP_ACT_ALLOW", Names = ["personality"],
                Args = [new LinuxSeccompArg { Index = 0, Value = 0x0008, Op = "SCMP_CMP_EQ" }],
            },
            new LinuxSyscall
            {
                Action = "SCMP_ACT_ALLOW", Names = ["personality"],
                Args = [new LinuxSeccompArg { Index = 0, Value = 0xffffffff, Op = "SCMP_CMP_EQ" }],
            },
            // clone: any flags except the namespace-creating ones (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
            new LinuxSyscall
            {
                Action = "SCMP_ACT_ALLOW", Names = ["clone"],
                Args = [new LinuxSeccompArg { Index = 0, Value = 0x7E020000, ValueTwo = 0, Op = "SCMP_CMP_MASKED_EQ" }],
            },
            // clone3 passes its flags in memory seccomp cannot read: make libc fall back to clone.
            new LinuxSyscall { Action = "SCMP_ACT_ERRNO", ErrnoRet = 38, Names = ["clone3"] },
        ],
    };

}
