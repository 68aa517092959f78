using System.Text;
using CriRuntime.Shim.Supervisor;

namespace CriRuntime.Tests.Unit.Shim;

public class CriLogTests
{
    private static List<(string Tag, string Text)> Frame(int maxLine, params string[] chunks)
    {
        var records = new List<(string, string)>();
        var f = new LogFramer((partial, content) => records.Add((partial ? "P" : "F", Encoding.UTF8.GetString(content.Span))), maxLine);
        foreach (var c in chunks) f.Feed(Encoding.UTF8.GetBytes(c));
        f.Finish();
        return records;
    }

    [Fact]
    public void FullLines_AreF_EvenWhenSplitAcrossReads()
    {
        Assert.Equal([("F", "hello"), ("F", "world"), ("F", "")], Frame(16384, "hel", "lo\nwor", "ld\n\n"));
    }

    [Fact]
    public void CarriageReturnBeforeNewline_IsDropped()
    {
        Assert.Equal([("F", "dos")], Frame(16384, "dos\r\n"));
    }

    [Fact]
    public void UnterminatedLastLine_IsP_AsContainerdWritesIt()
    {
        Assert.Equal([("F", "a"), ("P", "tail")], Frame(16384, "a\ntail"));
    }

    [Fact]
    public void LongLine_IsSplitIntoMaxSizedP_ThenF()
    {
        var line = new string('x', 16384 * 2 + 10);
        var records = Frame(LogFramer.DefaultMaxLine, line[..5000], line[5000..] + "\n");
        Assert.Equal(["P", "P", "F"], records.Select(r => r.Tag));
        Assert.Equal([16384, 16384, 10], records.Select(r => r.Text.Length));
    }

    [Fact]
    public void LineOfExactlyMax_IsOneF()
    {
        var records = Frame(LogFramer.DefaultMaxLine, new string('y', 16384) + "\n");
        Assert.Equal([("F", new string('y', 16384))], records);
    }

    [Fact]
    public void Timestamp_IsRfc3339NanoUtc_WithoutTrailingZeros()
    {
        Assert.Equal("2026-01-02T03:04:05.1234567Z", CriLogWriter.Timestamp(new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc).AddTicks(1234567)));
        Assert.Equal("2026-01-02T03:04:05.12Z", CriLogWriter.Timestamp(new DateTime(2026, 1, 2, 3, 4, 5, 120, DateTimeKind.Utc)));
        Assert.Equal("2026-01-02T03:04:05Z", CriLogWriter.Timestamp(new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc)));
    }

    [Fact]
    public void Writer_WritesOneRecordPerLine_AndReopensAfterRotation()
    {
        var dir = Directory.CreateTempSubdirectory("crilog");
        try
        {
            var path = Path.Combine(dir.FullName, "0.log");
            var t = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc);
            using var w = new CriLogWriter(path, () => t);
            w.Write("stdout", false, "one"u8);
            File.Move(path, path + ".1");
            w.Reopen();
            w.Write("stderr", true, "two"u8);
            Assert.Equal("2026-01-02T03:04:05Z stdout F one\n", File.ReadAllText(path + ".1"));
            Assert.Equal("2026-01-02T03:04:05Z stderr P two\n", File.ReadAllText(path));
        }
        finally { dir.Delete(true); }
    }
}
