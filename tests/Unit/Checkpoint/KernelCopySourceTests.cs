using System.Formats.Tar;
using System.Text;
using CriRuntime.Checkpoint;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>A file that grows while it is archived (a running container's log, the dump.log of a
/// lazy dump's CRIU, which logs on while it serves pages) stays one well-formed entry: the entry
/// is the file as it was when opened, and the entries after it are read back whole. A grown file
/// used to put more bytes into the archive than its header announced, and a lazy migration's
/// target refused the archive ("Unable to parse number", "inventory.img is missing").</summary>
public sealed class KernelCopySourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kcopy-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Appends to a file on the first write that goes through it: the tar header, which
    /// TarWriter writes after it took the entry's length and before it copies the data.</summary>
    private sealed class GrowOnFirstWrite(Stream inner, string file) : Stream
    {
        private bool _grown;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (!_grown)
            {
                _grown = true;
                File.AppendAllText(file, new string('b', 700));
            }
            inner.Write(buffer);
        }
    }

    private static List<(string Name, string Data)> ReadBack(Stream tar)
    {
        var entries = new List<(string, string)>();
        using var reader = new TarReader(tar);
        while (reader.GetNextEntry() is { } e)
        {
            using var ms = new MemoryStream();
            e.DataStream?.CopyTo(ms);
            entries.Add((e.Name, Encoding.ASCII.GetString(ms.ToArray())));
        }
        return entries;
    }

    [Fact]
    public void AFileGrowingBetweenItsHeaderAndItsData_IsArchivedAsLongAsItWasWhenOpened_AndTheNextEntryIsWhole()
    {
        var log = Path.Combine(_dir, "dump.log");
        File.WriteAllText(log, new string('a', 1000));
        var archive = new MemoryStream();
        using (var source = new KernelCopySource(log))
        using (var tar = new TarWriter(new GrowOnFirstWrite(archive, log), TarEntryFormat.Pax, leaveOpen: true))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "dump.log") { DataStream = source });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "checkpoint/inventory.img") { DataStream = new MemoryStream("inv"u8.ToArray()) });
        }
        Assert.Equal(1700, new FileInfo(log).Length); // it did grow in between
        archive.Position = 0;
        var entries = ReadBack(archive);
        Assert.Equal([("dump.log", new string('a', 1000)), ("checkpoint/inventory.img", "inv")], entries);
    }

    [Fact]
    public void KernelCopy_OfAFileThatGrewAfterItWasOpened_CopiesTheLengthItHadThen()
    {
        var log = Path.Combine(_dir, "container.log");
        File.WriteAllText(log, new string('a', 5000));
        var tarPath = Path.Combine(_dir, "out.tar");
        using (var file = new FileStream(tarPath, FileMode.CreateNew, FileAccess.Write))
        using (var archive = new WritebackFileStream(file, (_, _, _) => 0))
        using (var tar = new TarWriter(archive, TarEntryFormat.Pax, leaveOpen: true))
        using (var source = new KernelCopySource(log))
        {
            File.AppendAllText(log, new string('b', 3000));
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "container.log") { DataStream = source });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "next") { DataStream = new MemoryStream("next"u8.ToArray()) });
        }
        using var read = File.OpenRead(tarPath);
        Assert.Equal([("container.log", new string('a', 5000)), ("next", "next")], ReadBack(read));
    }
}
