using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>The container's stop signal (the kubelet's, else the image's, else SIGTERM), then
    /// SIGKILL after the timeout. Idempotent: unknown or exited containers are success.</summary>
    public override async Task<StopContainerResponse> StopContainer(StopContainerRequest request, ServerCallContext context)
    {
        var c = _containers.TryGet(request.ContainerId);
        if (c is null) return new StopContainerResponse();
        // A grace period is the kubelet's to choose (terminationGracePeriodSeconds): one longer than
        // a wait can take (int.MaxValue ms, ~24.8 days) waits that long, not an Internal error.
        await StopContainerAsync(c, TimeSpan.FromSeconds(Math.Clamp(request.Timeout, 0, int.MaxValue / 1000)), context.CancellationToken);
        return new StopContainerResponse();
    }

    private async Task StopContainerAsync(ContainerRecord c, TimeSpan timeout, CancellationToken ct)
    {
        if (c.State == ContainerPhase.Exited) return;
        if (c.State == ContainerPhase.Created)
        {
            // Never started: its init waits for start; kill it.
            await _shims.KillAsync(c.StateDir, 9, ct);
        }
        else
        {
            await _shims.StopAsync(c.StateDir, StopSignal(c), timeout, ct);
        }
        var final = await _shims.WaitAsync(c.Id, c.StateDir, ct);
        await _exits.RecordExitAsync(c.Id, final);
    }

    private int StopSignal(ContainerRecord c)
    {
        var config = ContainerConfig.Parser.ParseFrom(c.Config);
        if (config.StopSignal != Signal.RuntimeDefault) return SignalNumber(config.StopSignal.ToString());
        try
        {
            var image = _images.Resolve(c.ImageId);
            if (image.Config.Config?.StopSignal is { Length: > 0 } s) return SignalNumber(s);
        }
        catch (Errors.CriException) { }
        return 15;
    }

    /// <summary>"SIGTERM", "TERM", "Sigterm", "15" → 15; the real-time ones by offset, as systemd
    /// images set them ("SIGRTMIN+3" → 37, "SIGRTMAX-1" → 63) and as the CRI enum names them
    /// ("Sigrtminplus3").</summary>
    internal static int SignalNumber(string name)
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
