using System.Diagnostics;
using System.Text;
using System.Text.Json;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>criruntime-monitor serves ExecSync itself (docs/shim-protocol.md, "The monitor"): its
/// answer, built in C, must read as the .NET supervisor's ShimResponse does. Its test mode writes
/// the answer to an exec that ended with a given wait status and output.</summary>
public sealed class MonitorExecAnswerTests
{
    private const string State = """{"id":"c1","status":"running","shimPid":10,"pid":11,"createdAt":"2026-12-04T05:00:00+00:00","oomKilled":false}""";

    private static (ShimResponse Response, string Line) Answer(int status, bool timedOut, byte[] stdout, byte[] stderr, string said = "")
    {
        var psi = new ProcessStartInfo(MonitorLogTests.Built.Value,
            ["exec-answer", status.ToString(System.Globalization.CultureInfo.InvariantCulture), timedOut ? "1" : "0",
             stdout.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), said, State])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        };
        using var p = Process.Start(psi)!;
        var reading = Task.Run(() => p.StandardOutput.ReadToEnd());
        p.StandardInput.BaseStream.Write(stdout);
        p.StandardInput.BaseStream.Write(stderr);
        p.StandardInput.Close();
        var line = reading.Result;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        Assert.EndsWith("\n", line);
        Assert.Equal(1, line.Count(ch => ch == '\n')); // one line on the control socket
        return (JsonSerializer.Deserialize(line, ShimJsonContext.Default.ShimResponse)!, line);
    }

    [Fact]
    public void AnExit_IsItsCode_WithEveryByteOfBothStreams_Base64()
    {
        // Every byte value, and lengths that end on each base64 padding case.
        var all = Enumerable.Range(0, 256).Select(b => (byte)b).ToArray();
        foreach (var length in new[] { 0, 1, 2, 3, 4, 256 })
        {
            var stdout = all[..length];
            var stderr = all.Reverse().Take(length + 1).ToArray();
            var (r, _) = Answer(3 << 8, false, stdout, stderr);
            Assert.True(r.Ok);
            Assert.Equal(3, r.Exec!.ExitCode);
            Assert.Null(r.Exec.Signal);
            Assert.False(r.Exec.TimedOut);
            Assert.Equal(stdout, r.Exec.Stdout);
            Assert.Equal(stderr, r.Exec.Stderr);
            Assert.Equal("c1", r.State!.Id);
            Assert.Equal(ShimStatus.Running, r.State.Status);
        }
    }

    [Fact]
    public void ASignal_Is128PlusIt_AsTheSupervisorDecodesIt_AndATimeoutSaysSo()
    {
        var (r, _) = Answer(9, true, [], []);
        Assert.True(r.Ok);
        Assert.Equal(137, r.Exec!.ExitCode);
        Assert.Equal(9, r.Exec.Signal);
        Assert.True(r.Exec.TimedOut);
        Assert.Empty(r.Exec.Stdout);
    }

    [Fact]
    public void WhatExecInitSaid_IsTheError_ItsFirstLineWithoutThePrefix_Escaped()
    {
        var why = "exec \"no\\pe\": executable file not found in $PATH (/bin)\ttab";
        var (r, line) = Answer(127 << 8, false, [], Encoding.UTF8.GetBytes("ignored"), "error " + why + "\nsecond line");
        Assert.False(r.Ok);
        Assert.Equal(why, r.Error);
        Assert.Null(r.Exec);
        Assert.Equal("c1", r.State!.Id);
        Assert.DoesNotContain("second line", line);
    }
}
