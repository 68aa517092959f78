using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Images.Snapshots;

/// <summary>Unpacks one layer tar into an empty directory in overlayfs' on-disk form: OCI
/// whiteouts (.wh.NAME) become 0:0 character devices, opaque markers (.wh..wh..opq) become the
/// trusted.overlay.opaque=y xattr on their directory. Owners, modes (with setuid/sticky), xattrs
/// from PAX SCHILY.xattr.*, hard links, symlinks and modification times are kept.
///
/// Nothing is ever written outside the target: names with "..", writes through a symlink
/// (relative or absolute, escaping or not), hard links to paths outside the layer and device
/// nodes are refused with an <see cref="InvalidDataException"/> naming the layer and entry.
/// Symlinks themselves may point anywhere: they are only data until a container resolves them
/// inside its own root. Owners, modes, xattrs, device nodes, links and times are set through
/// <see cref="IHostKernel"/> (the real one unless a test gives a recording one).</summary>
public static class LayerExtractor
{
    private const string WhiteoutPrefix = ".wh.";
    private const string OpaqueMarker = ".wh..wh..opq";
    private const string OverlayOpaqueXattr = "trusted.overlay.opaque";
    private const string PaxXattrPrefix = "SCHILY.xattr.";

    /// <summary>Extracts a (possibly gzip or zstd compressed, detected by magic bytes) layer into
    /// <paramref name="root"/>, which must exist and be empty. Returns the digest of the
    /// uncompressed tar: the layer's diff_id.</summary>
    /// <param name="reopen">Opens the layer again from the start, for a second pass that sets xattrs
    /// whose binary values the tar reader could not decode; without it those are skipped.</param>
    /// <param name="whiteouts">OCI whiteouts (.wh.NAME) become overlayfs' (a layer); false: such a
    /// name is an ordinary file (the content of a tmpfs, which no overlay reads).</param>
    public static Digest Extract(Stream compressed, string root, string layer, CancellationToken ct = default, Func<Stream>? reopen = null,
        IHostKernel? kernel = null, bool whiteouts = true)
    {
        var k = kernel ?? HostKernel.Instance;
        try
        {
            Digest diffId;
            bool lossy;
            using (var tar = Decompress(compressed))
            using (var hashing = new HashingStream(tar))
            {
                lossy = ExtractTar(k, new TarEndTracker(hashing), root, layer, ct, whiteouts);
                hashing.Drain(); // trailing padding belongs to the diff_id too
                diffId = hashing.Digest();
            }
            if (lossy && reopen is not null)
            {
                using var again = Decompress(reopen());
                try { ApplyRawXattrs(k, again, root); }
                catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
                {
                    // The tar reader accepted this layer; a header our scanner does not follow
                    // only means the binary xattrs stay unset, as without the second pass.
                }
            }
            return diffId;
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException or ZstdSharp.ZstdException
                                  && !e.Message.StartsWith($"layer {layer}:", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"layer {layer}: corrupt or truncated layer: {e.Message}", e);
        }
    }

    /// <summary>gzip (1f 8b), zstd (28 b5 2f fd) or plain tar, by the first bytes.</summary>
    public static Stream Decompress(Stream input)
    {
        var buffered = new BufferedStream(input, 1 << 16);
        Span<byte> magic = stackalloc byte[4];
        var n = 0;
        // Peek without consuming: BufferedStream has no peek, so read and wrap in a prefix stream.
        while (n < 4)
        {
            var r = buffered.Read(magic[n..]);
            if (r == 0) break;
            n += r;
        }
        var prefixed = new PrefixStream(magic[..n].ToArray(), buffered);
        if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) return new GZipStream(prefixed, CompressionMode.Decompress);
        if (n >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
            return new ZstdSharp.DecompressionStream(prefixed);
        return prefixed;
    }

    /// <summary>Extracts; true when some xattr value was not valid UTF-8 and was left unset.</summary>
    private static bool ExtractTar(IHostKernel k, TarEndTracker tar, string root, string layer, CancellationToken ct, bool whiteouts)
    {
        var lossy = false;
        root = Path.GetFullPath(root);
        var dirTimes = new List<(string Path, DateTimeOffset Time)>();
        using var reader = new TarReader(tar, leaveOpen: true);
        TarEntry? entry;
        while ((entry = Next(reader, tar, layer)) is not null)
        {
            ct.ThrowIfCancellationRequested();
            if (entry.EntryType is TarEntryType.GlobalExtendedAttributes) continue;
            string Bad(string why) => $"layer {layer}: entry \"{entry.Name}\": {why}";

            var parts = SplitName(entry.Name) ?? throw new InvalidDataException(Bad("path contains \"..\""));
            if (parts.Length == 0) continue; // "./": the root itself, which the snapshot owns

            var parent = EnsureParents(k, root, parts.AsSpan(0, parts.Length - 1), Bad);
            var name = parts[^1];
            var target = Path.Combine(parent, name);

            if (whiteouts && name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
            {
                if (name == OpaqueMarker)
                    k.Lsetxattr(parent, OverlayOpaqueXattr, "y"u8);
                else if (!name.StartsWith(WhiteoutPrefix + WhiteoutPrefix, StringComparison.Ordinal)) // aufs metadata (.wh..wh.plnk) is skipped
                {
                    var hidden = name[WhiteoutPrefix.Length..];
                    if (hidden is "" or "." or "..") throw new InvalidDataException(Bad("invalid whiteout name"));
                    var whiteout = Path.Combine(parent, hidden);
                    RemoveExisting(k, whiteout);
                    k.Mknod(whiteout, Libc.S_IFCHR, 0); // a 0:0 character device: overlayfs' whiteout
                }
                continue;
            }

            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    if (k.FileType(target) != Libc.S_IFDIR)
                    {
                        RemoveExisting(k, target);
                        Directory.CreateDirectory(target);
                    }
                    lossy |= !ApplyMetadata(k, target, entry, isSymlink: false);
                    dirTimes.Add((target, entry.ModificationTime));
                    continue;

                case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                    RemoveExisting(k, target);
                    using (var file = new FileStream(target, new FileStreamOptions
                    {
                        Mode = FileMode.CreateNew, // O_EXCL: never follows a symlink planted at target
                        Access = FileAccess.Write,
                        UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                        PreallocationSize = entry.Length,
                    }))
                    {
                        entry.DataStream?.CopyTo(file);
                        // The entry's data stream just stops where the tar does.
                        if (file.Position != entry.Length)
                            throw new InvalidDataException(Bad($"the tar ends inside this entry's data ({file.Position} of {entry.Length} bytes)"));
                    }
                    break;

                case TarEntryType.SymbolicLink:
                    if (string.IsNullOrEmpty(entry.LinkName)) throw new InvalidDataException(Bad("symlink without a target"));
                    RemoveExisting(k, target);
                    File.CreateSymbolicLink(target, entry.LinkName);
                    lossy |= !ApplyMetadata(k, target, entry, isSymlink: true);
                    continue;

                case TarEntryType.HardLink:
                {
                    var linkParts = SplitName(entry.LinkName) ?? throw new InvalidDataException(Bad($"hard link target \"{entry.LinkName}\" contains \"..\""));
                    if (linkParts.Length == 0) throw new InvalidDataException(Bad("hard link to the layer root"));
                    var linkParent = CheckParents(k, root, linkParts.AsSpan(0, linkParts.Length - 1))
                        ?? throw new InvalidDataException(Bad($"hard link target \"{entry.LinkName}\" is not inside the layer"));
                    var existing = Path.Combine(linkParent, linkParts[^1]);
                    var type = k.FileType(existing);
                    if (type is null) throw new InvalidDataException(Bad($"hard link target \"{entry.LinkName}\" is not in the layer"));
                    if (type == Libc.S_IFDIR) throw new InvalidDataException(Bad($"hard link to directory \"{entry.LinkName}\""));
                    if (existing == target) continue;
                    RemoveExisting(k, target);
                    k.Link(existing, target);
                    continue; // a hard link shares its target's inode and metadata
                }

                case TarEntryType.Fifo:
                    RemoveExisting(k, target);
                    k.Mknod(target, Libc.S_IFIFO | 0x180, 0); // 0600 until ApplyMetadata sets the real mode
                    break;

                case TarEntryType.CharacterDevice or TarEntryType.BlockDevice:
                    throw new InvalidDataException(Bad($"device node ({entry.EntryType}) is not allowed in a layer"));

                default:
                    throw new InvalidDataException(Bad($"unsupported tar entry type {entry.EntryType}"));
            }
            lossy |= !ApplyMetadata(k, target, entry, isSymlink: false);
            k.Lutimes(target, entry.ModificationTime, entry.ModificationTime);
        }
        // Children change their directory's mtime: set directories last, deepest first.
        for (var i = dirTimes.Count - 1; i >= 0; i--)
            k.Lutimes(dirTimes[i].Path, dirTimes[i].Time, dirTimes[i].Time);
        return lossy;
    }

    /// <summary>Second pass: sets the binary xattr values the first pass had to skip, on entries
    /// that are still there, through the same "no symlinked parents" rule.</summary>
    private static void ApplyRawXattrs(IHostKernel k, Stream tar, string root)
    {
        root = Path.GetFullPath(root);
        foreach (var x in PaxXattrScanner.Scan(tar))
        {
            if (!IsAllowedXattr(x.Name) || IsValidUtf8(x.Value)) continue; // the first pass set these
            if (SplitName(x.Path) is not { Length: > 0 } parts) continue;
            if (CheckParents(k, root, parts.AsSpan(0, parts.Length - 1)) is not { } parent) continue;
            var path = Path.Combine(parent, parts[^1]);
            if (k.FileType(path) is null) continue;
            SetXattr(k, path, x.Name, x.Value);
        }
    }

    private static bool IsValidUtf8(byte[] value)
    {
        try { _ = StrictUtf8.GetString(value); return true; }
        catch (DecoderFallbackException) { return false; }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>A layer must not forge overlay's own metadata (opaque, redirect, origin).</summary>
    private static bool IsAllowedXattr(string name) => !name.StartsWith("trusted.overlay.", StringComparison.Ordinal);

    private static void SetXattr(IHostKernel k, string path, string name, ReadOnlySpan<byte> value)
    {
        try { k.Lsetxattr(path, name, value); }
        catch (IOException e) when (e.HResult is 95 or 1) // EOPNOTSUPP, EPERM (e.g. user.* on a symlink)
        {
            // kept without the attribute, as tar --xattrs does on such a file system
        }
    }

    private static TarEntry? Next(TarReader reader, TarEndTracker tar, string layer)
    {
        try
        {
            var entry = reader.GetNextEntry(copyData: false);
            if (entry is not null) tar.EntryRead(entry.Name, entry.Length);
            return entry;
        }
        catch (EndOfStreamException) when (tar.EndedCleanly)
        {
            return null; // no end-of-archive blocks (or padding): see TarEndTracker
        }
        catch (Exception e) when (e is FormatException or InvalidDataException or EndOfStreamException)
        {
            throw new InvalidDataException($"layer {layer}: malformed tar: {(tar.AtEnd ? tar.Truncation() : e.Message)}", e);
        }
    }

    /// <summary>The components of an entry name, "." and empty ones dropped and a leading "/"
    /// ignored (tar strips it too); null when any component is "..".</summary>
    internal static string[]? SplitName(string name)
    {
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        return parts.Any(p => p == "..") ? null : parts;
    }

    /// <summary>Creates the parent directories of an entry (0755 root, as tar does for implied
    /// parents) and refuses to go through anything that is not a real directory: a symlink there
    /// would send the write somewhere else, inside or outside the layer.</summary>
    internal static string EnsureParents(IHostKernel k, string root, ReadOnlySpan<string> parents, Func<string, string> bad)
    {
        var path = root;
        foreach (var p in parents)
        {
            path = Path.Combine(path, p);
            var type = k.FileType(path);
            if (type is null) Directory.CreateDirectory(path);
            else if (type == Libc.S_IFLNK) throw new InvalidDataException(bad($"parent \"{Rel(root, path)}\" is a symlink; writing through it is not allowed"));
            else if (type != Libc.S_IFDIR) throw new InvalidDataException(bad($"parent \"{Rel(root, path)}\" is not a directory"));
        }
        return path;
    }

    /// <summary>Like <see cref="EnsureParents"/> without creating anything; null when a component is
    /// missing or not a real directory.</summary>
    private static string? CheckParents(IHostKernel k, string root, ReadOnlySpan<string> parents)
    {
        var path = root;
        foreach (var p in parents)
        {
            path = Path.Combine(path, p);
            if (k.FileType(path) != Libc.S_IFDIR) return null;
        }
        return path;
    }

    private static string Rel(string root, string path) => Path.GetRelativePath(root, path);

    internal static void RemoveExisting(IHostKernel k, string path)
    {
        var type = k.FileType(path);
        if (type is null) return;
        if (type == Libc.S_IFDIR) Directory.Delete(path, recursive: true);
        else File.Delete(path);
    }

    /// <summary>Owner, mode and xattrs; false when an xattr value was lost in UTF-8 decoding.</summary>
    private static bool ApplyMetadata(IHostKernel k, string path, TarEntry entry, bool isSymlink)
    {
        var complete = true;
        k.Lchown(path, entry.Uid, entry.Gid);
        if (!isSymlink) k.Chmod(path, (uint)entry.Mode); // after chown, which clears setuid/setgid
        if (entry is PaxTarEntry pax)
        {
            foreach (var (key, value) in pax.ExtendedAttributes)
            {
                if (!key.StartsWith(PaxXattrPrefix, StringComparison.Ordinal)) continue;
                var name = key[PaxXattrPrefix.Length..];
                if (!IsAllowedXattr(name)) continue;
                // TarReader hands PAX values over as UTF-8 strings; binary values that are not valid
                // UTF-8 (security.capability often is not) arrive with U+FFFD in place of the bytes.
                // Writing those would set a different value, e.g. other capabilities: the raw pass does.
                if (value.Contains('\uFFFD')) { complete = false; continue; }
                SetXattr(k, path, name, Encoding.UTF8.GetBytes(value));
            }
        }
        if (isSymlink) k.Lutimes(path, entry.ModificationTime, entry.ModificationTime);
        return complete;
    }

    /// <summary>Hashes every byte read through it (the diff_id of the uncompressed tar).</summary>
    private sealed class HashingStream(Stream inner) : IO.NonSeekableStream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            var n = inner.Read(buffer);
            _hash.AppendData(buffer[..n]);
            return n;
        }
        public void Drain()
        {
            var buffer = new byte[1 << 16];
            while (Read(buffer) > 0) { }
        }
        public Digest Digest() => Images.Digest.FromHash(_hash.GetHashAndReset());
        public override bool CanRead => true;
        protected override void Dispose(bool disposing) { if (disposing) _hash.Dispose(); base.Dispose(disposing); }
    }

    /// <summary>Gives back bytes already read (the magic number) before the rest of a stream.</summary>
    private sealed class PrefixStream(byte[] prefix, Stream inner) : IO.NonSeekableStream
    {
        private int _offset;
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            if (_offset < prefix.Length)
            {
                var n = Math.Min(buffer.Length, prefix.Length - _offset);
                prefix.AsSpan(_offset, n).CopyTo(buffer);
                _offset += n;
                return n;
            }
            return inner.Read(buffer);
        }
        public override bool CanRead => true;
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    }
}
