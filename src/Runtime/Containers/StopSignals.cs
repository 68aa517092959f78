namespace CriRuntime.Containers;

/// <summary>Signal names as the CRI, images and systemd spell them, to numbers.</summary>
public static class StopSignals
{
    /// <summary>"SIGTERM", "TERM", "Sigterm", "15" → 15; the real-time ones by offset, as systemd
    /// images set them ("SIGRTMIN+3" → 37, "SIGRTMAX-1" → 63) and as the CRI enum names them
    /// ("Sigrtminplus3").</summary>
    public static int Number(string name)
    {
        const int RtMin = 34, RtMax = 64;
        if (int.TryParse(name, out var n)) return n;
        var upper = name.ToUpperInvariant().Replace("RTMINPLUS", "RTMIN+", StringComparison.Ordinal).Replace("RTMAXMINUS", "RTMAX-", StringComparison.Ordinal);
        if (!upper.StartsWith("SIG", StringComparison.Ordinal)) upper = "SIG" + upper;
        if (upper == "SIGRTMIN") return RtMin;
        if (upper == "SIGRTMAX") return RtMax;
        if (upper.StartsWith("SIGRTMIN+", StringComparison.Ordinal) && int.TryParse(upper["SIGRTMIN+".Length..], out var up) && up is > 0 and <= RtMax - RtMin)
            return RtMin + up;
        if (upper.StartsWith("SIGRTMAX-", StringComparison.Ordinal) && int.TryParse(upper["SIGRTMAX-".Length..], out var down) && down is > 0 and <= RtMax - RtMin)
            return RtMax - down;
        return upper switch
        {
            "SIGHUP" => 1, "SIGINT" => 2, "SIGQUIT" => 3, "SIGILL" => 4, "SIGTRAP" => 5, "SIGABRT" => 6, "SIGBUS" => 7,
            "SIGFPE" => 8, "SIGKILL" => 9, "SIGUSR1" => 10, "SIGSEGV" => 11, "SIGUSR2" => 12, "SIGPIPE" => 13,
            "SIGALRM" => 14, "SIGTERM" => 15, "SIGSTKFLT" => 16, "SIGCHLD" => 17, "SIGCONT" => 18, "SIGSTOP" => 19,
            "SIGTSTP" => 20, "SIGTTIN" => 21, "SIGTTOU" => 22, "SIGURG" => 23, "SIGXCPU" => 24, "SIGXFSZ" => 25,
            "SIGVTALRM" => 26, "SIGPROF" => 27, "SIGWINCH" => 28, "SIGIO" => 29, "SIGPWR" => 30, "SIGSYS" => 31,
            "SIGIOT" => 6, "SIGCLD" => 17, "SIGPOLL" => 29,
            _ => 15,
        };
    }
}
