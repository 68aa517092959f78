using CriRuntime.Errors;
using CriRuntime.Images.Content;

namespace CriRuntime.Images.Snapshots;

/// <summary>Unpacked layers for overlayfs: &lt;root&gt;/snapshots/&lt;chain id hex&gt;/fs holds one
/// layer's own files (whiteouts as overlay expects them), so an image's root is an overlay of its
/// layers' fs dirs. A layer is extracted into snapshots/.tmp-*/ and renamed into place only when
/// complete and its diff_id verified: a snapshot dir that exists is whole. Removal renames to
/// .del-* first, so a half-deleted snapshot is never taken for a present one.</summary>
public sealed class SnapshotStore
{
    private const string TempPrefix = ".tmp-";
    private const string DeletePrefix = ".del-";
    private readonly string _dir;

    public SnapshotStore(string root)
    {
        _dir = Path.Combine(root, "snapshots");
        Directory.CreateDirectory(_dir);
    }

    /// <summary>The directory to give overlayfs as a lowerdir.</summary>
    public string FsPath(Digest chainId) => Path.Combine(_dir, chainId.Hex, "fs");

    public bool Has(Digest chainId) => Directory.Exists(FsPath(chainId));

    public IEnumerable<Digest> List() =>
        Directory.EnumerateDirectories(_dir).Select(Path.GetFileName)
            .Where(n => n is { Length: 64 } && n.All(char.IsAsciiHexDigitLower))
            .Select(n => new Digest(Digest.Sha256, n!));

    /// <summary>Extracts <paramref name="blob"/> (the layer <paramref name="layerDigest"/>) as the
    /// snapshot <paramref name="chainId"/>, checking its uncompressed digest is
    /// <paramref name="diffId"/>. On any failure nothing of it is kept.</summary>
    public void Unpack(Digest chainId, Digest diffId, Digest layerDigest, string blob, CancellationToken ct)
    {
        if (Has(chainId)) return;
        var tmp = Path.Combine(_dir, $"{TempPrefix}{chainId.Hex}-{Guid.NewGuid():N}");
        var fs = Path.Combine(tmp, "fs");
        try
        {
            Directory.CreateDirectory(fs);
            File.SetUnixFileMode(fs, (UnixFileMode)0x1ED /* 0755 */);
            Digest actual;
            FileStream Open() => new(blob, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using (var input = Open())
                actual = LayerExtractor.Extract(input, fs, layerDigest.ToString(), ct, Open);
            if (actual != diffId)
                throw new DigestMismatchException(diffId, actual, $"layer {layerDigest} unpacks to {actual}, but the image config says its diff_id is {diffId}");
            var final = Path.Combine(_dir, chainId.Hex);
            try { Directory.Move(tmp, final); }
            catch (IOException) when (Directory.Exists(final)) { DeleteTree(tmp); } // another pull won the race
            ContentStore.FsyncDirectory(_dir);
        }
        catch (IOException e) when (ContentStore.IsDiskFull(e))
        {
            DeleteTree(tmp);
            throw Fail.ResourceExhausted($"no space left unpacking layer {layerDigest} under {_dir}: {e.Message}", e);
        }
        catch
        {
            DeleteTree(tmp);
            throw;
        }
    }

    public void Delete(Digest chainId)
    {
        if (Detach(chainId) is { } doomed) DeleteTree(doomed);
    }

    /// <summary>Takes a snapshot out of the store at once (a rename) and returns where it now is,
    /// for <see cref="DeleteTree"/> to remove at leisure; null when it was not there.</summary>
    public string? Detach(Digest chainId)
    {
        var path = Path.Combine(_dir, chainId.Hex);
        if (!Directory.Exists(path)) return null;
        var doomed = Path.Combine(_dir, $"{DeletePrefix}{chainId.Hex}-{Guid.NewGuid():N}");
        Directory.Move(path, doomed);
        return doomed;
    }

    /// <summary>Removes what interrupted unpacks and deletions left. Only safe when nothing is unpacking.</summary>
    public void CleanTemp()
    {
        foreach (var d in Directory.EnumerateDirectories(_dir))
        {
            var name = Path.GetFileName(d);
            if (name.StartsWith(TempPrefix, StringComparison.Ordinal) || name.StartsWith(DeletePrefix, StringComparison.Ordinal))
                DeleteTree(d);
        }
    }

    public static void DeleteTree(string path)
    {
        try { if (Directory.Exists(path)) Directory.Delete(path, recursive: true); }
        catch (DirectoryNotFoundException) { }
    }
}
