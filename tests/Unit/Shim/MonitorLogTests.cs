using System.Diagnostics;
using System.Text;
using CriRuntime.Shim.Supervisor;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>criruntime-monitor (src/Monitor/monitor.c), compiled from the source under test with
/// the Makefile's flags, writes the container log byte for byte as the .NET supervisor does
/// (LogFramer + CriLogWriter): both run in turn on one container's output, so a reader must not
/// tell which wrote a record. Its test mode frames stdin with a fixed clock.</summary>
public sealed class MonitorLogTests
{
    internal static readonly Lazy<string> Built = new(Compile);

    private static string Compile()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "CriRuntime.sln"))) dir = dir.Parent;
        var source = Path.Combine(dir?.FullName ?? throw new InvalidOperationException("CriRuntime.sln not found"), "src/Monitor/monitor.c");
        var output = Path.Combine(Directory.CreateTempSubdirectory("monitor").FullName, "criruntime-monitor");
        var psi = new ProcessStartInfo("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", output, source]) { RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"cc {source} failed: {err}");
        return output;
    }

    private static byte[] Monitor(string stream, DateTime at, byte[] input)
    {
        var nanos = (at.Ticks - DateTime.UnixEpoch.Ticks) * 100;
        var psi = new ProcessStartInfo(Built.Value, ["frame", stream, nanos.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        };
        using var p = Process.Start(psi)!;
        var reading = Task.Run(() =>
        {
            using var ms = new MemoryStream();
            p.StandardOutput.BaseStream.CopyTo(ms);
            return ms.ToArray();
        });
        p.StandardInput.BaseStream.Write(input);
        p.StandardInput.Close();
        var bytes = reading.Result;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return bytes;
    }

    private static byte[] Shim(string stream, DateTime at, byte[] input)
    {
        var output = new MemoryStream();
        var framer = new LogFramer((partial, content) => output.Write(CriLogWriter.Format(at, stream, partial, content.Span)));
        framer.Feed(input);
        framer.Finish();
        return output.ToArray();
    }

    public static TheoryData<string, string> Outputs => new()
    {
        { "full lines and an empty one", "hello\nworld\n\n" },
        { "CRLF", "dos\r\nunix\n" },
        { "unended last line", "a\ntail" },
        { "exactly 16 KiB then newline", new string('x', 16384) + "\n" },
        { "exactly 16 KiB then CRLF", new string('y', 16384) + "\r\n" },
        { "long line", new string('z', 16384 * 2 + 10) + "\nnext\n" },
        { "long unended", new string('w', 40000) },
        { "utf-8 and control bytes", "héllo\tworld\u0001\n" },
    };

    [Theory]
    [MemberData(nameof(Outputs))]
    public void Records_AreByteForByteThoseOfTheShim(string what, string output)
    {
        var input = Encoding.UTF8.GetBytes(output);
        foreach (var at in (DateTime[])[new(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc), new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc).AddTicks(1234560)])
        {
            var expected = Shim("stderr", at, input);
            var actual = Monitor("stderr", at, input);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{what} at {at:O}:\nshim:    {Head(expected)}\nmonitor: {Head(actual)}");
        }
    }

    private static string Head(byte[] bytes) => Convert.ToHexString(bytes.AsSpan(0, Math.Min(120, bytes.Length)));

    [Fact]
    public void Timestamp_IsRfc3339Nano_WithTrailingZerosDropped()
    {
        var at = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc).AddTicks(1000000); // .1 s
        Assert.Equal("2026-01-02T03:04:05.1Z stdout F x\n", Encoding.UTF8.GetString(Monitor("stdout", at, "x\n"u8.ToArray())));
    }
}
