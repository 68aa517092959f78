using System.Security.Cryptography;
using CriRuntime.Errors;
using CriRuntime.Interop;

namespace CriRuntime.Images.Content;

/// <summary>Blobs by digest: &lt;root&gt;/blobs/sha256/&lt;hex&gt;. A blob is written to
/// &lt;root&gt;/ingest/, hashed while it streams, fsynced, and renamed into blobs/ only once its
/// digest and size are verified, so a blob that exists is always complete and correct; a crash
/// leaves at most an ingest file, removed at start.</summary>
public sealed class ContentStore
{
    private readonly string _blobs;
    private readonly string _ingest;

    public ContentStore(string root)
    {
        _blobs = Path.Combine(root, "blobs", Digest.Sha256);
        _ingest = Path.Combine(root, "ingest");
        Directory.CreateDirectory(_blobs);
        Directory.CreateDirectory(_ingest);
    }

    public string PathOf(Digest digest) => Path.Combine(_blobs, Check(digest).Hex);

    public bool Has(Digest digest) => File.Exists(PathOf(digest));

    public long SizeOf(Digest digest) => new FileInfo(PathOf(digest)).Length;

    public byte[] Read(Digest digest)
    {
        try { return File.ReadAllBytes(PathOf(digest)); }
        catch (FileNotFoundException) { throw Fail.NotFound($"blob {digest} is not in the content store"); }
    }

    public FileStream OpenRead(Digest digest) => new(PathOf(digest), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);

    /// <summary>Every stored blob's digest.</summary>
    public IEnumerable<Digest> List() =>
        Directory.EnumerateFiles(_blobs).Select(Path.GetFileName)
            .Where(n => n is { Length: 64 } && n.All(char.IsAsciiHexDigitLower))
            .Select(n => new Digest(Digest.Sha256, n!));

    public void Delete(Digest digest) => File.Delete(PathOf(digest));

    /// <summary>Removes what an interrupted write left behind. Only safe when nothing is writing.</summary>
    public void CleanIngest()
    {
        foreach (var f in Directory.EnumerateFileSystemEntries(_ingest)) File.Delete(f);
    }

    public void WriteBytes(Digest expected, ReadOnlySpan<byte> content)
    {
        var actual = Digest.Of(content);
        if (actual != expected) throw new DigestMismatchException(expected, actual);
        if (Has(expected)) return;
        using var ms = new MemoryStream(content.ToArray());
        WriteVerifiedAsync(expected, content.Length, ms, null, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Streams <paramref name="source"/> into the store as <paramref name="expected"/>.
    /// <paramref name="expectedSize"/> (when not negative) bounds the read: a longer or shorter
    /// stream is rejected like a wrong digest. <paramref name="progress"/> is told each chunk's
    /// size. Any failure (mismatch, cancellation, disk full) deletes the partial file.</summary>
    public async Task WriteVerifiedAsync(Digest expected, long expectedSize, Stream source, Action<int>? progress, CancellationToken ct)
    {
        var target = PathOf(expected);
        var tmp = Path.Combine(_ingest, $"{expected.Hex}.{Guid.NewGuid():N}");
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long total = 0;
            await using (var file = new FileStream(tmp, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Options = FileOptions.Asynchronous,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            }))
            {
                var buffer = new byte[1 << 17];
                int n;
                while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    total += n;
                    if (expectedSize >= 0 && total > expectedSize)
                        throw new DigestMismatchException(expected, null, $"blob {expected} is longer than its declared size {expectedSize}");
                    hash.AppendData(buffer, 0, n);
                    await file.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                    progress?.Invoke(n);
                }
                if (expectedSize >= 0 && total != expectedSize)
                    throw new DigestMismatchException(expected, null, $"blob {expected} ended after {total} of {expectedSize} bytes");
                var actual = Digest.FromHash(hash.GetHashAndReset());
                if (actual != expected) throw new DigestMismatchException(expected, actual);
                file.Flush(flushToDisk: true);
            }
            File.Move(tmp, target, overwrite: true);
            FsyncDirectory(_blobs);
        }
        catch (IOException e) when (IsDiskFull(e))
        {
            TryDelete(tmp);
            throw Fail.ResourceExhausted($"no space left writing blob {expected} under {_ingest}: {e.Message}", e);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    public static bool IsDiskFull(IOException e) =>
        e.HResult is 28 or 122 || unchecked((uint)e.HResult) is 0x80070070 or 0x80070027
        || e.Message.Contains("No space left on device", StringComparison.Ordinal)
        || e.Message.Contains("Disk quota exceeded", StringComparison.Ordinal);

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static Digest Check(Digest d) =>
        d.Algorithm == Digest.Sha256 && d.Hex.Length == 64 ? d : throw Fail.InvalidArgument($"unsupported digest {d}");

    internal static void FsyncDirectory(string dir)
    {
        using var fd = FdHandle.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY);
        if (Libc.Fsync(fd.Fd) != 0) throw Errno.Last("fsync", dir);
    }
}

/// <summary>Content did not hash to the digest it was fetched by (or had the wrong size).</summary>
public sealed class DigestMismatchException(Digest expected, Digest? actual, string? message = null)
    : Exception(message ?? $"blob {expected} failed verification: content hashes to {actual}")
{
    public Digest Expected { get; } = expected;
    public Digest? Actual { get; } = actual;
}
