using System.Formats.Tar;
using System.Security.Cryptography;
using CriRuntime.Checkpoint;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Checkpoint;

public sealed class CheckpointArchiveTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ckptarchive-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CheckpointArchive.Parts Parts(string images, CheckpointArchive.RootfsDiff diff) =>
        new(new ConfigDump { Id = "c1", Name = "counter" }, "{}"u8.ToArray(), new StatusDump { Id = "c1", State = "running" },
            images, null, null, new StdioDump(), diff);

    private static Dictionary<string, byte[]> Read(string tar)
    {
        var result = new Dictionary<string, byte[]>();
        using var reader = new TarReader(File.OpenRead(tar));
        while (reader.GetNextEntry() is { } e)
        {
            using var ms = new MemoryStream();
            e.DataStream?.CopyTo(ms);
            result[e.Name] = ms.ToArray();
        }
        return result;
    }

    [Fact]
    public void Write_CopiesCriusImagesByteForByte_AcrossTheWritebackKicks()
    {
        var images = Directory.CreateDirectory(Path.Combine(_dir, "images")).FullName;
        // Larger than a writeback kick and not a multiple of the tar block: the kernel copy, the
        // positions after it and the padding all have to be right.
        var pages = RandomNumberGenerator.GetBytes((int)WritebackFileStream.KickBytes * 2 + 1234);
        File.WriteAllBytes(Path.Combine(images, "pages-1.img"), pages);
        File.WriteAllBytes(Path.Combine(images, "core-1.img"), [1, 2, 3]);
        Directory.CreateDirectory(Path.Combine(images, "sub"));
        File.WriteAllBytes(Path.Combine(images, "sub", "x.img"), [9]);
        var upper = Directory.CreateDirectory(Path.Combine(_dir, "upper")).FullName;
        File.WriteAllText(Path.Combine(upper, "written.txt"), "kept\n");
        var diff = CheckpointArchive.WriteRootfsDiff(upper, Path.Combine(_dir, "rootfs-diff.tar"), new HashSet<string>());
        var location = Path.Combine(_dir, "out.tar");

        CheckpointArchive.Write(location, Parts(images, diff));

        var entries = Read(location);
        Assert.Equal(pages, entries["checkpoint/pages-1.img"]);
        Assert.Equal([1, 2, 3], entries["checkpoint/core-1.img"]);
        Assert.Equal([9], entries["checkpoint/sub/x.img"]);
        Assert.Equal("{}"u8.ToArray(), entries["spec.dump"]);
        var inner = Path.Combine(_dir, "inner.tar");
        File.WriteAllBytes(inner, entries["rootfs-diff.tar"]);
        Assert.Equal("kept\n", System.Text.Encoding.UTF8.GetString(Read(inner)["written.txt"]));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(location));
        Assert.Single(Directory.GetFiles(_dir, "*.tar", SearchOption.TopDirectoryOnly), f => f.EndsWith("out.tar", StringComparison.Ordinal));
    }

    /// <summary>The writer is CRIU's image streamer while the container is frozen: a writeback
    /// that waits for the disk must not hold it up.</summary>
    [Fact]
    public async Task WritebackFileStream_KickTo_ReturnsWhileTheWritebackItStartedIsStillInTheKernel()
    {
        using var release = new ManualResetEventSlim();
        using var entered = new ManualResetEventSlim();
        var calls = new List<(long Offset, long Bytes)>();
        var kicker = 0;
        var callers = new List<int>();
        using var file = new FileStream(Path.Combine(_dir, "a.tar"), FileMode.CreateNew, FileAccess.Write);
        using var stream = new WritebackFileStream(file, (_, offset, bytes) =>
        {
            lock (calls)
            {
                calls.Add((offset, bytes));
                callers.Add(Environment.CurrentManagedThreadId);
            }
            entered.Set();
            release.Wait(TimeSpan.FromSeconds(30)); // a disk slower than the copy
            return 0;
        });

        var kicks = Task.Run(() =>
        {
            kicker = Environment.CurrentManagedThreadId;
            stream.KickTo(WritebackFileStream.KickBytes);
            stream.KickTo(2 * WritebackFileStream.KickBytes);
            stream.KickTo(3 * WritebackFileStream.KickBytes);
        });
        var returned = true;
        try { await kicks.WaitAsync(TimeSpan.FromSeconds(10)); }
        catch (TimeoutException) { returned = false; }
        // The writeback thread took the first range (and is held "in the kernel") before the
        // stop: a stop that came first would leave nothing to check (seen once in CI).
        Assert.True(entered.Wait(TimeSpan.FromSeconds(30)), "the writeback thread never started a writeback");
        release.Set();
        stream.StopWriteback();

        Assert.True(returned, "KickTo waited for the writeback it started");
        await kicks;
        lock (calls)
        {
            Assert.NotEmpty(calls);
            Assert.DoesNotContain(kicker, callers);
            Assert.Equal(0, calls[0].Offset);
            // Ranges follow each other: what one call left out, the next one starts with.
            for (var i = 1; i < calls.Count; i++) Assert.Equal(calls[i - 1].Offset + calls[i - 1].Bytes, calls[i].Offset);
        }
    }

    /// <summary>Once the pages are in (the container waits for nothing more), the writeback covers
    /// everything written so far, also the tail below one kick, and leaves nice 19.</summary>
    [Fact]
    public void WritebackFileStream_Hurry_StartsTheWritebackOfAllWrittenSoFar_AtNormalPriority()
    {
        var calls = new List<(long Offset, long Bytes, int Nice)>();
        using var called = new SemaphoreSlim(0);
        using var file = new FileStream(Path.Combine(_dir, "a.tar"), FileMode.CreateNew, FileAccess.Write);
        using var stream = new WritebackFileStream(file, (_, offset, bytes) =>
        {
            var nice = Libc.Getpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid());
            lock (calls) calls.Add((offset, bytes, nice));
            called.Release();
            return 0;
        });

        stream.KickTo(WritebackFileStream.KickBytes);
        Assert.True(called.Wait(TimeSpan.FromSeconds(30)));
        var end = WritebackFileStream.KickBytes + 12345; // below the next kick: KickTo alone leaves it to the fsync
        stream.KickTo(end);
        stream.Hurry(end);
        Assert.True(called.Wait(TimeSpan.FromSeconds(30)));
        stream.StopWriteback();

        lock (calls)
        {
            Assert.Equal([(0L, WritebackFileStream.KickBytes), (WritebackFileStream.KickBytes, 12345L)], calls.Select(c => (c.Offset, c.Bytes)));
            Assert.Equal(19, calls[0].Nice);
            Assert.Equal(0, calls[1].Nice);
        }
    }

    /// <summary>The kernel copy is only taken when TarWriter hands an entry's data over with
    /// Stream.CopyTo: if a .NET update stops doing that, the archive stays right (Read is the
    /// fallback) but slower, and this says so.</summary>
    [Fact]
    public void TarWriter_HandsAnEntrysDataOverThroughCopyTo()
    {
        var data = new CopyToRecorder(new byte[5000]);
        using (var tar = new TarWriter(new MemoryStream(), TarEntryFormat.Pax))
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "x") { DataStream = data });
        Assert.True(data.CopiedTo);
    }

    [Fact]
    public void WriteRootfsDiff_ListsWhiteoutsAsDeleted_AndSkipsTheSpecsMountPoints()
    {
        var upper = Directory.CreateDirectory(Path.Combine(_dir, "upper")).FullName;
        Directory.CreateDirectory(Path.Combine(upper, "etc"));
        File.WriteAllText(Path.Combine(upper, "etc", "motd"), "hi");
        Directory.CreateDirectory(Path.Combine(upper, "data"));

        var diff = CheckpointArchive.WriteRootfsDiff(upper, Path.Combine(_dir, "d.tar"), new HashSet<string> { "/data" });

        Assert.Empty(diff.Deleted);
        var names = Read(diff.TarPath).Keys.Select(k => k.TrimEnd('/')).ToList();
        Assert.Contains("etc/motd", names);
        Assert.DoesNotContain("data", names);
    }

    private sealed class CopyToRecorder(byte[] bytes) : MemoryStream(bytes)
    {
        public bool CopiedTo { get; private set; }

        public override void CopyTo(Stream destination, int bufferSize)
        {
            CopiedTo = true;
            base.CopyTo(destination, bufferSize);
        }
    }
}
