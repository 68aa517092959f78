namespace CriRuntime.Oci;

/// <summary>The runtime's default seccomp profile ("RuntimeDefault" in the CRI), equivalent to the
/// one moby and containerd ship (moby profiles/seccomp/default.json): an allow-list, everything
/// else fails with EPERM; syscalls that only make sense with a capability (mount, unshare, setns,
/// ptrace, bpf, ...) are allowed only when the container has that capability; clone may not
/// create namespaces without CAP_SYS_ADMIN, and clone3 then answers ENOSYS so libc falls back to
/// clone, whose flags the filter can inspect. Generated into config.json by the daemon; this file
/// depends on nothing but the spec model so the daemon can link it.</summary>
public static class DefaultSeccompProfile
{
    private const string Allowed = """
        accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
        clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
        clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
        dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
        epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
        fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64
        fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs
        fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd
        getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
        getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32
        getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
        get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
        inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
        io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
        io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
        lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
        lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
        mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
        mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv
        msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
        openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect
        poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
        pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
        recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
        restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
        rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
        sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
        sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
        sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
        semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
        setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
        setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
        setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
        setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
        socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
        sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
        timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
        umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid
        waitpid write writev
        process_vm_readv process_vm_writev ptrace
        """;

    /// <summary>Syscalls allowed only with a capability.</summary>
    private static readonly (string Capability, string Names)[] ByCapability =
    [
        ("CAP_SYS_ADMIN", "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_CHROOT", "chroot"),
        ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
        ("CAP_SYS_PACCT", "acct"),
        ("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
        ("CAP_SYS_RAWIO", "iopl ioperm"),
        ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
        ("CAP_SYS_TTY_CONFIG", "vhangup"),
        ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
        ("CAP_SYSLOG", "syslog"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
    ];

    /// <summary>CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: the bits clone may not
    /// carry without CAP_SYS_ADMIN.</summary>
    private const ulong CloneNamespaceFlags = 0x7E020000;
    private const ulong AF_VSOCK = 40;

    /// <param name="capabilities">The container's bounding set: the profile only allows a
    /// privileged syscall when the process could have its capability.</param>
    /// <param name="arch">GOARCH-style name of the host: "amd64" or "arm64".</param>
    public static LinuxSeccomp Build(IEnumerable<string> capabilities, string arch = "amd64")
    {
        var caps = new HashSet<string>(capabilities, StringComparer.OrdinalIgnoreCase);
        var rules = new List<LinuxSyscall> { Allow(Split(Allowed)) };
        static LinuxSyscall Allow(IReadOnlyList<string> names, params LinuxSeccompArg[] args) =>
            new() { Names = names, Action = "SCMP_ACT_ALLOW", Args = args.Length == 0 ? null : args };

        // Every socket family but AF_VSOCK, which reaches the host's hypervisor.
        rules.Add(Allow(["socket"], new LinuxSeccompArg { Index = 0, Value = AF_VSOCK, Op = "SCMP_CMP_NE" }));
        // personality: only PER_LINUX, PER_LINUX32, UNAME26 variants and the query (0xffffffff).
        foreach (var persona in new ulong[] { 0, 8, 0x20000, 0x20008, 0xffffffff })
            rules.Add(Allow(["personality"], new LinuxSeccompArg { Index = 0, Value = persona, Op = "SCMP_CMP_EQ" }));

        switch (arch)
        {
            case "amd64":
                rules.Add(Allow(["arch_prctl", "modify_ldt"]));
                break;
            case "arm64" or "arm":
                rules.Add(Allow(["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]));
                break;
        }

        foreach (var (cap, names) in ByCapability)
            if (caps.Contains(cap)) rules.Add(Allow(Split(names)));

        if (!caps.Contains("CAP_SYS_ADMIN"))
        {
            rules.Add(Allow(["clone"], new LinuxSeccompArg { Index = 0, Value = CloneNamespaceFlags, ValueTwo = 0, Op = "SCMP_CMP_MASKED_EQ" }));
            rules.Add(new LinuxSyscall { Names = ["clone3"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 38 /* ENOSYS */ });
        }

        return new LinuxSeccomp
        {
            DefaultAction = "SCMP_ACT_ERRNO",
            DefaultErrnoRet = 1, // EPERM
            Architectures = arch switch
            {
                "amd64" => ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "arm64" => ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                _ => null,
            },
            Syscalls = rules,
        };
    }

    private static string[] Split(string names) => names.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
}
