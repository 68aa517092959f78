using System.Formats.Tar;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using CriRuntime.Checkpoint;
using CriRuntime.Interop;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>CRIU's `dump --stream` protocol against <see cref="ImageStreamer"/>, with this test
/// as CRIU: requests and pipes as criu/img-streamer.c sends them, images open at the same time,
/// and the archive read back with .NET's TarReader (and GNU tar, which the kubelet's users reach for).</summary>
public sealed unsafe class ImageStreamerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("imgstream-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<(string Name, byte[] Data)> Read(string tar)
    {
        var result = new List<(string, byte[])>();
        using var reader = new TarReader(File.OpenRead(tar));
        while (reader.GetNextEntry() is { } e)
        {
            using var ms = new MemoryStream();
            e.DataStream?.CopyTo(ms);
            result.Add((e.Name, ms.ToArray()));
        }
        return result;
    }

    /// <summary>The CRIU side: one connection, one request + pipe per image.</summary>
    private sealed class FakeCriu : IDisposable
    {
        private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

        public FakeCriu(string imagesDir) =>
            _socket.Connect(new UnixDomainSocketEndPoint(Path.Combine(imagesDir, ImageStreamer.SocketName)));

        /// <summary>Asks for an image: its pipe's write end, which the caller writes and closes.</summary>
        public FileStream Open(string name)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            var message = new byte[2 + nameBytes.Length];
            message[0] = 10; // field 1, length-delimited
            message[1] = (byte)nameBytes.Length;
            nameBytes.CopyTo(message, 2);
            _socket.Send(BitConverter.GetBytes((uint)message.Length));
            _socket.Send(message);
            var fds = stackalloc int[2];
            Assert.Equal(0, Libc.Pipe2(fds, Libc.O_CLOEXEC));
            FdPassing.Send((int)_socket.Handle, [0], [fds[0]]);
            Libc.Close(fds[0]);
            return new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fds[1], ownsHandle: true), FileAccess.Write, 0);
        }

        public void Dispose() => _socket.Dispose();
    }

    [Fact]
    public void ImagesOpenAtOnce_EndUpWholeInTheArchive_TheFirstLargeOneDirect_ALaterLargeOneSpilled()
    {
        var images = Directory.CreateDirectory(Path.Combine(_dir, "checkpoint")).FullName;
        var location = Path.Combine(_dir, "out.tar");
        var pages1 = RandomNumberGenerator.GetBytes(ImageStreamer.MemoryLimit * 3 + 777);
        var pages2 = RandomNumberGenerator.GetBytes(ImageStreamer.MemoryLimit * 2 + 5);
        var files = RandomNumberGenerator.GetBytes(1000);
        var pagemap = RandomNumberGenerator.GetBytes(300);

        using var archive = ArchiveWriter.Create(location);
        archive.Bytes("config.dump", "{}"u8.ToArray());
        using var streamer = ImageStreamer.Start(images, archive, "checkpoint", _dir);
        var writer = Task.Run(() =>
        {
            using var criu = new FakeCriu(images);
            // files.img stays open across the others, as CRIU keeps it; pages-1 and pagemap-1 are written
            // side by side; pages-2 grows past the memory limit while pages-1 is still open.
            var f = criu.Open("files.img");
            f.Write(files, 0, 500);
            var p1 = criu.Open("pages-1.img");
            var map = criu.Open("pagemap-1.img");
            p1.Write(pages1, 0, ImageStreamer.MemoryLimit + 10);
            map.Write(pagemap);
            map.Dispose();
            var p2 = criu.Open("pages-2.img");
            p2.Write(pages2);
            p2.Dispose();
            p1.Write(pages1, ImageStreamer.MemoryLimit + 10, pages1.Length - ImageStreamer.MemoryLimit - 10);
            p1.Dispose();
            f.Write(files, 500, 500);
            f.Dispose();
        });
        writer.Wait(TimeSpan.FromSeconds(30));
        streamer.Finish(TimeSpan.FromSeconds(10));
        archive.Bytes("spec.dump", "{}"u8.ToArray());
        archive.Commit();

        var entries = Read(location);
        Assert.Equal(["config.dump", "checkpoint/pages-1.img", "checkpoint/pagemap-1.img", "checkpoint/pages-2.img", "checkpoint/files.img", "spec.dump"],
            entries.Select(e => e.Name));
        var byName = entries.ToDictionary(e => e.Name, e => e.Data);
        Assert.Equal(pages1, byName["checkpoint/pages-1.img"]);
        Assert.Equal(pages2, byName["checkpoint/pages-2.img"]);
        Assert.Equal(pagemap, byName["checkpoint/pagemap-1.img"]);
        Assert.Equal(files, byName["checkpoint/files.img"]);
        Assert.Equal(streamer.Written, entries.Skip(1).Take(4).Select(e => e.Name));
        Assert.Empty(Directory.GetFiles(_dir, "*.spill"));
        // The blocks reserved ahead of the spliced pages (tens of MiB) were given back at the commit.
        var size = new FileInfo(location).Length;
        var allocated = AllocatedBytes(location);
        Assert.True(allocated <= size + (1 << 20), $"{allocated} bytes allocated for an archive of {size}");
        if (File.Exists("/usr/bin/tar") || File.Exists("/bin/tar"))
        {
            var psi = new System.Diagnostics.ProcessStartInfo("tar", ["-tvf", location]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var tar = System.Diagnostics.Process.Start(psi)!;
            var listing = tar.StandardOutput.ReadToEnd();
            var errors = tar.StandardError.ReadToEnd();
            tar.WaitForExit();
            Assert.True(tar.ExitCode == 0, errors);
            Assert.Contains($"{pages1.Length} ", listing);
            Assert.Contains("checkpoint/pages-1.img", listing);
        }
    }

    /// <summary>At CRIU's post-dump the pages must be in the archive (until then they are
    /// references to the process's memory), whatever other image CRIU still holds open.</summary>
    [Fact]
    public void WaitForPages_ReturnsOnceEveryPagesImageIsInTheArchive_ThoughAnotherImageIsStillOpen()
    {
        var images = Directory.CreateDirectory(Path.Combine(_dir, "checkpoint")).FullName;
        var location = Path.Combine(_dir, "out.tar");
        var pages = RandomNumberGenerator.GetBytes(ImageStreamer.MemoryLimit * 3 + 99);
        using var archive = ArchiveWriter.Create(location);
        using var streamer = ImageStreamer.Start(images, archive, "checkpoint", _dir);
        var criu = new FakeCriu(images);
        var files = criu.Open("files.img");
        files.Write([1, 2, 3]);
        var writer = Task.Run(() =>
        {
            using var p = criu.Open("pages-1.img");
            p.Write(pages);
        });
        Assert.True(writer.Wait(TimeSpan.FromSeconds(30)));

        streamer.WaitForPages(TimeSpan.FromSeconds(30));

        Assert.Contains("checkpoint/pages-1.img", streamer.Written);
        Assert.DoesNotContain("checkpoint/files.img", streamer.Written);
        files.Dispose();
        criu.Dispose();
        streamer.Finish(TimeSpan.FromSeconds(10));
        archive.Commit();
        var byName = Read(location).ToDictionary(e => e.Name, e => e.Data);
        Assert.Equal(pages, byName["checkpoint/pages-1.img"]);
        Assert.Equal([1, 2, 3], byName["checkpoint/files.img"]);
    }

    [Fact]
    public void CriuThatNeverConnects_EndsTheStreamAtOnce_WithNothingWritten()
    {
        var images = Directory.CreateDirectory(Path.Combine(_dir, "checkpoint")).FullName;
        using var archive = ArchiveWriter.Create(Path.Combine(_dir, "out.tar"));
        using var streamer = ImageStreamer.Start(images, archive, "checkpoint", _dir);
        streamer.Finish(TimeSpan.FromSeconds(10));
        Assert.Empty(streamer.Written);
    }

    /// <summary>The file's allocated bytes (coreutils stat: 512-byte blocks).</summary>
    private static long AllocatedBytes(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%b", path]) { RedirectStandardOutput = true };
        using var stat = System.Diagnostics.Process.Start(psi)!;
        var blocks = stat.StandardOutput.ReadToEnd().Trim();
        stat.WaitForExit();
        return long.Parse(blocks, System.Globalization.CultureInfo.InvariantCulture) * 512;
    }

    [Fact]
    public void AnArchiveNotCommitted_IsRemoved_AndTheLocationNeverAppears()
    {
        var location = Path.Combine(_dir, "out.tar");
        string tmp;
        using (var archive = ArchiveWriter.Create(location))
        {
            archive.Bytes("a", new byte[10]);
            var direct = archive.BeginDirect("checkpoint/pages-1.img");
            direct.Write(new byte[100]);
            tmp = archive.TempPath;
            Assert.True(File.Exists(tmp));
            Assert.Throws<InvalidOperationException>(() => archive.Commit());
        }
        Assert.False(File.Exists(tmp));
        Assert.False(File.Exists(location));
    }

    [Theory]
    [InlineData("../x")]
    [InlineData("a/b")]
    [InlineData("")]
    public void ARequestNamingAPathOrNothing_IsRefused(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        byte[] message = [10, (byte)bytes.Length, .. bytes];
        Assert.Throws<IOException>(() => ImageStreamer.RequestName(message));
    }

    [Fact]
    public void PaxRecordLength_CountsItsOwnDigits()
    {
        Assert.Equal("18 size=209846272\n", ArchiveWriter.DirectEntry.Record("size", "209846272"));
        var r = ArchiveWriter.DirectEntry.Record("path", new string('a', 90));
        Assert.Equal(r.Length, int.Parse(r[..r.IndexOf(' ')], System.Globalization.CultureInfo.InvariantCulture));
        var edge = ArchiveWriter.DirectEntry.Record("path", new string('a', 92)); // 99 + 2 digits crosses to 3 digits
        Assert.Equal(Encoding.UTF8.GetByteCount(edge), int.Parse(edge[..edge.IndexOf(' ')], System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>An entry larger than the ustar size field's 8 GiB is read through its PAX size.</summary>
    [Fact]
    public void DirectHeader_OfAnEntryOver8GiB_CarriesItsSizeInPax()
    {
        const long size = (1L << 33) + 4096;
        var header = ArchiveWriter.DirectEntry.Header("checkpoint/pages-1.img", size, DateTimeOffset.UnixEpoch);
        using var ms = new MemoryStream();
        ms.Write(header);
        ms.Position = 0;
        // TarReader reads the header and exposes the length before reading any data.
        using var reader = new TarReader(new LengthOnly(ms, ms.Length + size));
        var e = reader.GetNextEntry(copyData: false)!;
        Assert.Equal("checkpoint/pages-1.img", e.Name);
        Assert.Equal(size, e.Length);
    }

    /// <summary>A stream that claims to go on (zeros) beyond its bytes, without holding them.</summary>
    private sealed class LengthOnly(MemoryStream inner, long length) : Stream
    {
        private long _position;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = _position < inner.Length ? inner.Read(buffer, offset, (int)Math.Min(count, inner.Length - _position)) : (int)Math.Min(count, length - _position);
            if (_position >= inner.Length) Array.Clear(buffer, offset, n);
            _position += n;
            return n;
        }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
