using System.Diagnostics;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>`criruntime-monitor launch SHIM ARGS…` (what the daemon runs at StartContainer):
/// starts `SHIM supervise ARGS…` in a session of its own with /dev/null stdio and its readiness
/// pipe on fd 3, copies the report to stdout and exits, the shim left running. The shims here
/// are scripts that say what they were given and what they hold.</summary>
public sealed class MonitorLaunchTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("monitor-launch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Script(string name, string body)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private static (int Code, string Stdout, string Stderr) Launch(params string[] args) => Launch(null, args);

    private static (int Code, string Stdout, string Stderr) Launch(IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo(MonitorLogTests.Built.Value, ["launch", .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        // The launcher's stdout ends when it exits: the shim holds none of its pipes.
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }

    [Fact]
    public void TheShimGetsSuperviseAndTheArguments_ANewSession_DevNullStdio_AndItsReportIsPassedOn()
    {
        var seen = Path.Combine(_dir, "seen");
        // Reports, closes the pipe, then notes what it has (its open fds as ls sees them from
        // another process, so that no redirection of its own is among them), its session), still running after the launcher has exited.
        var shim = Script("shim", $$"""
            echo "ok $$ 4242 shim.cgroup:10:20 shim.init:20:35" >&3
            exec 3>&-
            sh -c 'ls -l /proc/$1/fd > $2' - $$ {{seen}}.fds
            { echo "args $0 $*"; cut -d' ' -f6 /proc/$$/stat; echo $$; } > {{seen}}.tmp
            mv {{seen}}.tmp {{seen}}
            """);

        var (code, stdout, stderr) = Launch(shim, "--id", "c1", "--state", "/x y");

        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        var report = ShimReport.Parse(stdout, out var error);
        Assert.NotNull(report);
        Assert.Equal("", error);
        Assert.Equal(4242, report.Pid);
        Assert.Equal(["shim.cgroup", "shim.init"], report.Phases.Select(p => p.Name));
        Assert.Equal((20L, 35L), (report.Phases[1].Start, report.Phases[1].End));
        Assert.True(SpinWait.SpinUntil(() => File.Exists(seen), TimeSpan.FromSeconds(10)), "the shim script did not finish");
        var lines = File.ReadAllLines(seen);
        Assert.Equal($"args {shim} supervise --id c1 --state /x y", lines[0]);
        Assert.Equal(report.ShimPid.ToString(System.Globalization.CultureInfo.InvariantCulture), lines[2]);
        Assert.Equal(lines[2], lines[1]); // a session leader: its session id is its pid
        var fds = File.ReadAllLines(seen + ".fds");
        foreach (var fd in new[] { 0, 1, 2 })
            Assert.Contains(fds, l => l.EndsWith($" {fd} -> /dev/null", StringComparison.Ordinal));
        // None of the launcher's pipes (its stdout and stderr are the caller's, and the readiness
        // pipe was closed above) nor any socket came along.
        Assert.DoesNotContain(fds, l => l.Contains("pipe:", StringComparison.Ordinal) || l.Contains("socket:", StringComparison.Ordinal));
    }

    /// <summary>The daemon's CRIRUNTIME_SETUP_NICE: the launcher, and so the shim it starts, run
    /// at that nice value (HelperPriority); without it, or out of range, at the caller's.</summary>
    [Theory]
    [InlineData("5", 5)]
    [InlineData(null, 0)]
    [InlineData("-3", -3)] // a daemon running above the default priority
    [InlineData("25", 0)] // out of range: ignored
    public void TheSetupNice_FromTheEnvironment_IsTheShims(string? value, int expected)
    {
        var seen = Path.Combine(_dir, "nice");
        var shim = Script("shim", $$"""
            cut -d' ' -f19 /proc/$$/stat > {{seen}}
            echo "ok $$ 4242" >&3
            """);
        var env = new Dictionary<string, string>();
        if (value is not null) env[CriRuntime.Shim.Client.HelperPriority.Variable] = value;
        var (code, _, stderr) = Launch(env, shim, "--id", "c1");
        Assert.True(code == 0, stderr);
        Assert.Equal(expected.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(seen).Trim());
    }

    [Fact]
    public void AShimThatExitsWithoutAReport_FailsTheLaunch_SayingHowItEnded()
    {
        var (code, stdout, stderr) = Launch(Script("quits", "exit 3"), "--id", "c1");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("exited with 3 before it reported", stderr);
    }

    [Fact]
    public void AShimThatCannotBeStarted_IsAnErrorReport_NamingIt()
    {
        var missing = Path.Combine(_dir, "no-such-shim");
        var (code, stdout, _) = Launch(missing, "--id", "c1");
        Assert.Equal(0, code);
        Assert.Null(ShimReport.Parse(stdout, out var error));
        Assert.Equal($"start {missing}: No such file or directory", error);
    }

    [Fact]
    public void AShimErrorReport_IsTheShimsMessage()
    {
        var (code, stdout, _) = Launch(Script("fails", "echo 'error container init exited during setup (exit code 1)' >&3"), "--id", "c1");
        Assert.Equal(0, code);
        Assert.Null(ShimReport.Parse(stdout, out var error));
        Assert.Equal("container init exited during setup (exit code 1)", error);
    }
}
