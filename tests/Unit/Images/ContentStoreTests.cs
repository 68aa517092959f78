using CriRuntime.Images;
using CriRuntime.Images.Content;

namespace CriRuntime.Tests.Unit.Images;

public sealed class ContentStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("criruntime-content-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task WriteVerified_StoresBlob_WhenDigestMatches()
    {
        var store = new ContentStore(_dir);
        var data = "hello blob"u8.ToArray();
        var d = Digest.Of(data);
        long seen = 0;
        await store.WriteVerifiedAsync(d, data.Length, new MemoryStream(data), n => seen += n, CancellationToken.None);
        Assert.True(store.Has(d));
        Assert.Equal(data, store.Read(d));
        Assert.Equal(data.Length, seen);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "ingest")));
    }

    [Fact]
    public async Task WriteVerified_RejectsCorruptedStream_AndKeepsNothing()
    {
        var store = new ContentStore(_dir);
        var data = "hello blob"u8.ToArray();
        var d = Digest.Of(data);
        var corrupted = (byte[])data.Clone();
        corrupted[3] ^= 0xff;
        var e = await Assert.ThrowsAsync<DigestMismatchException>(() => store.WriteVerifiedAsync(d, data.Length, new MemoryStream(corrupted), null, CancellationToken.None));
        Assert.Equal(d, e.Expected);
        Assert.False(store.Has(d));
        Assert.Empty(store.List());
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "ingest")));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(50)]
    public async Task WriteVerified_RejectsWrongSize(int declared)
    {
        var store = new ContentStore(_dir);
        var data = "hello blob"u8.ToArray();
        await Assert.ThrowsAsync<DigestMismatchException>(() => store.WriteVerifiedAsync(Digest.Of(data), declared, new MemoryStream(data), null, CancellationToken.None));
        Assert.Empty(store.List());
    }

    [Fact]
    public async Task WriteVerified_Cancelled_LeavesNoIngestFile()
    {
        var store = new ContentStore(_dir);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var data = new byte[1000];
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.WriteVerifiedAsync(Digest.Of(data), data.Length, new MemoryStream(data), null, cts.Token));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "ingest")));
    }

    [Fact]
    public async Task WriteVerified_DiskFull_IsResourceExhausted_AndKeepsNothing()
    {
        var small = Path.Combine(_dir, "small");
        Directory.CreateDirectory(small);
        Run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small);
        try
        {
            var store = new ContentStore(small);
            var data = new byte[1 << 20];
            Random.Shared.NextBytes(data);
            var e = await Assert.ThrowsAsync<CriRuntime.Errors.CriException>(() =>
                store.WriteVerifiedAsync(Digest.Of(data), data.Length, new MemoryStream(data), null, CancellationToken.None));
            Assert.Equal(CriRuntime.Errors.ErrorKind.ResourceExhausted, e.Kind);
            Assert.Contains("no space left", e.Message);
            Assert.Empty(store.List());
            Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(small, "ingest")));
        }
        finally
        {
            Run("umount", small);
        }
    }

    private static void Run(string file, params string[] args)
    {
        using var p = System.Diagnostics.Process.Start(file, args);
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }
}
