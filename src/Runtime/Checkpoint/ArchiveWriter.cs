using System.Formats.Tar;
using System.Text;
using CriRuntime.Interop;

namespace CriRuntime.Checkpoint;

/// <summary>A checkpoint archive being written: a temporary file beside its final name (mode
/// 0600), fsynced and renamed into place by <see cref="Commit"/>; disposed without a commit, it
/// is deleted, so a failure never leaves a partial archive at the final name.
/// Entries go in one after the other through <see cref="Tar"/> (PAX), or as a
/// <see cref="DirectEntry"/>: data that a pipe delivers while its length is not known yet (CRIU's
/// streamed pages) is moved into the file by the kernel (splice), and its header is written into
/// the place kept for it once the data has ended.</summary>
internal sealed class ArchiveWriter : IDisposable
{
    private readonly FileStream _file;
    private readonly WritebackFileStream _archive;
    private readonly string _location, _tmp;
    private readonly TarWriter _tar;
    private DirectEntry? _direct;
    private bool _committed, _disposed;

    private ArchiveWriter(string location)
    {
        _location = location;
        _tmp = Path.Combine(Path.GetDirectoryName(location)!, $".{Path.GetFileName(location)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        _file = new FileStream(_tmp, new FileStreamOptions
        {
            Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 1 << 16,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        _archive = new WritebackFileStream(_file);
        _tar = new TarWriter(_archive, TarEntryFormat.Pax, leaveOpen: true);
    }

    public static ArchiveWriter Create(string location) => new(location);

    /// <summary>The temporary file (tests, diagnostics).</summary>
    public string TempPath => _tmp;

    /// <summary>Adds whole entries. Not while a <see cref="DirectEntry"/> is open.</summary>
    public TarWriter Tar => _direct is null ? _tar : throw new InvalidOperationException($"tar entry while {_direct.Name} is being written");

    /// <summary>A regular file entry of <paramref name="data"/>, mode 0600.</summary>
    public void Bytes(string name, ArraySegment<byte> data)
    {
        var e = new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            DataStream = new MemoryStream(data.Array!, data.Offset, data.Count, writable: false),
            Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            ModificationTime = DateTimeOffset.UtcNow,
        };
        Tar.WriteEntry(e);
    }

    /// <summary>A regular file of ours as an entry whose data the kernel copies in (copy_file_range).</summary>
    public void File(string path, string name)
    {
        var info = new FileInfo(path);
        using var data = new KernelCopySource(path);
        Tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            DataStream = data,
            Mode = info.UnixFileMode,
            ModificationTime = info.LastWriteTimeUtc,
        });
    }

    /// <summary>Starts an entry whose data comes next and whose length is known only at its end.
    /// Until <see cref="DirectEntry.End"/>, nothing else is written to the archive.</summary>
    public DirectEntry BeginDirect(string name)
    {
        if (_direct is not null) throw new InvalidOperationException($"{name}: {_direct.Name} is still being written");
        _ = DirectEntry.Header(name, 0, DateTimeOffset.UnixEpoch); // a name that cannot be written fails now, not at the end
        _archive.Flush();
        var at = _file.Position;
        return _direct = new DirectEntry(this, name, at);
    }

    /// <summary>What the container was frozen for is in the archive: its writeback goes ahead at
    /// normal priority now (<see cref="WritebackFileStream.Hurry"/>).</summary>
    public void Hurry() => _archive.Hurry(_file.Length);

    /// <summary>End-of-archive blocks, fsync (unless not <paramref name="durable"/>: an archive no
    /// restart or reboot needs, a migration's, sent and discarded while the pod is frozen), rename
    /// into place.</summary>
    public void Commit(Containers.StepTimes? steps = null, bool durable = true)
    {
        if (_direct is not null) throw new InvalidOperationException($"{_direct.Name} was not ended");
        Tar.Dispose();
        _archive.StopWriteback();
        // Blocks reserved past the end (Preallocate) go back.
        if (_allocated > 0 && Libc.Ftruncate(Fd, _file.Length) != 0)
            throw Errno.Exception("ftruncate", _tmp, Errno.Current);
        steps?.Mark("close");
        _file.Flush(flushToDisk: durable);
        if (durable) steps?.Mark("fsync");
        _file.Dispose();
        System.IO.File.Move(_tmp, _location, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_committed) return;
        _archive.StopWriteback();
        _file.Dispose();
        System.IO.File.Delete(_tmp);
    }

    private int Fd => (int)_file.SafeFileHandle.DangerousGetHandle();

    /// <summary>How far ahead of the pages being written the archive's blocks are reserved.</summary>
    private const long PreallocateStep = 64 << 20;
    private long _allocated;

    /// <summary>Reserves the archive's blocks up to past <paramref name="end"/>, a step at a time
    /// (fallocate, the file's size unchanged): the writeback started during the dump then finds
    /// its blocks allocated instead of allocating them (ext4's delayed allocation) against the
    /// writes of CRIU's pages, which the frozen container waits for. What is left past the end
    /// is given back at <see cref="Commit"/>. Advisory: a file system without it only loses that.</summary>
    private void Preallocate(long end)
    {
        if (end <= _allocated) return;
        var from = Math.Max(_allocated, _file.Length);
        if (Libc.Fallocate(Fd, Libc.FALLOC_FL_KEEP_SIZE, from, end - from + PreallocateStep) == 0)
            _allocated = end + PreallocateStep;
        else
            _allocated = long.MaxValue; // unsupported here: do not ask again
    }

    /// <summary>An entry being moved in from a pipe: its header's place (<see cref="HeaderBytes"/>)
    /// is kept at <see cref="HeaderAt"/>, the data follows it.</summary>
    public sealed class DirectEntry
    {
        /// <summary>A PAX extended header (block + its records' block) and the ustar header:
        /// fixed size, whatever the entry's length, because the place is kept before it is known.</summary>
        public const int HeaderBytes = 3 * 512;
        private readonly ArchiveWriter _owner;
        private long _size;

        internal DirectEntry(ArchiveWriter owner, string name, long headerAt)
        {
            (_owner, Name, HeaderAt) = (owner, name, headerAt);
        }

        public string Name { get; }
        public long HeaderAt { get; }
        public long Size => _size;

        /// <summary>Appends bytes already read (what arrived before the entry went direct).</summary>
        public void Write(ReadOnlySpan<byte> data)
        {
            RandomAccess.Write(_owner._file.SafeFileHandle, data, HeaderAt + HeaderBytes + _size);
            _size += data.Length;
            _owner._archive.KickTo(HeaderAt + HeaderBytes + _size);
        }

        /// <summary>Moves what <paramref name="pipe"/> (non-blocking) holds into the archive:
        /// the bytes moved, 0 at the pipe's end of file, -1 when it is empty for now.</summary>
        public unsafe long SpliceFrom(int pipe)
        {
            long moved = 0;
            while (true)
            {
                var off = HeaderAt + HeaderBytes + _size;
                _owner.Preallocate(off + ImageStreamer.PagesPipeSize);
                var n = Libc.Splice(pipe, null, _owner.Fd, &off, ImageStreamer.PagesPipeSize, Libc.SPLICE_F_MOVE | Libc.SPLICE_F_NONBLOCK);
                if (n > 0)
                {
                    _size += n;
                    moved += n;
                    _owner._archive.KickTo(off);
                    continue;
                }
                if (n == 0) return moved > 0 ? moved : 0;
                var errno = Errno.Current;
                if (errno == Errno.EINTR) continue;
                if (errno == Errno.EAGAIN) return moved > 0 ? moved : -1;
                throw Errno.Exception("splice", $"{Name} into the archive", errno);
            }
        }

        /// <summary>Writes the header into its place and the padding after the data; the archive
        /// takes whole entries again.</summary>
        public void End()
        {
            if (!ReferenceEquals(_owner._direct, this)) throw new InvalidOperationException($"{Name} already ended");
            var handle = _owner._file.SafeFileHandle;
            RandomAccess.Write(handle, Header(Name, _size, DateTimeOffset.UtcNow), HeaderAt);
            var end = HeaderAt + HeaderBytes + _size;
            var pad = (int)((512 - _size % 512) % 512);
            if (pad > 0) RandomAccess.Write(handle, new byte[pad], end);
            _owner._file.Position = end + pad;
            _owner._direct = null;
        }

        /// <summary>The <see cref="HeaderBytes"/> before an entry's data: a PAX extended header
        /// carrying its path and size (any length, any name up to 255 bytes), then a ustar header
        /// (mode 0600, owner 0:0) for readers without PAX.</summary>
        public static byte[] Header(string name, long size, DateTimeOffset mtime)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            if (nameBytes.Length is 0 or > 255 || name.Contains('\0')) throw new ArgumentException($"tar entry name '{name}' cannot be written", nameof(name));
            if (size < 0) throw new ArgumentOutOfRangeException(nameof(size));
            var records = Encoding.UTF8.GetBytes(Record("path", name) + Record("size", size.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            var header = new byte[HeaderBytes];
            var seconds = Math.Max(0, mtime.ToUnixTimeSeconds());
            // Readers take the name from the PAX record; the ustar fields get what fits.
            Ustar(header.AsSpan(0, 512), Fit(Encoding.UTF8.GetBytes("PaxHeaders/" + Path.GetFileName(name))), records.Length, seconds, (byte)'x', 0x1a4);
            records.CopyTo(header.AsSpan(512));
            Ustar(header.AsSpan(1024, 512), Fit(nameBytes), size <= MaxOctal11 ? size : 0, seconds, (byte)'0', 0x180);
            return header;
        }

        private static ReadOnlySpan<byte> Fit(byte[] name) => name.AsSpan(0, Math.Min(100, name.Length));

        private const long MaxOctal11 = (1L << 33) - 1;

        /// <summary>A PAX record "LEN key=value\n", LEN counting itself.</summary>
        internal static string Record(string key, string value)
        {
            var body = Encoding.UTF8.GetByteCount(key) + Encoding.UTF8.GetByteCount(value) + 3; // ' ', '=', '\n'
            var len = body + 1;
            while (len.ToString(System.Globalization.CultureInfo.InvariantCulture).Length + body > len) len++;
            return $"{len} {key}={value}\n";
        }

        private static void Ustar(Span<byte> h, ReadOnlySpan<byte> name, long size, long mtime, byte type, int mode)
        {
            h.Clear();
            name.CopyTo(h);
            Octal(h.Slice(100, 8), mode);
            Octal(h.Slice(108, 8), 0);
            Octal(h.Slice(116, 8), 0);
            Octal(h.Slice(124, 12), size);
            Octal(h.Slice(136, 12), mtime);
            h[156] = type;
            "ustar\0"u8.CopyTo(h[257..]);
            "00"u8.CopyTo(h[263..]);
            h.Slice(148, 8).Fill((byte)' ');
            var sum = 0;
            foreach (var b in h) sum += b;
            Octal(h.Slice(148, 7), sum);
            h[155] = (byte)' ';
        }

        /// <summary>Zero-padded octal in all but the field's last byte, which stays NUL.</summary>
        private static void Octal(Span<byte> field, long value)
        {
            var digits = field.Length - 1;
            for (var i = digits - 1; i >= 0; i--)
            {
                field[i] = (byte)('0' + (value & 7));
                value >>= 3;
            }
            if (value != 0) throw new ArgumentOutOfRangeException(nameof(value), "does not fit its tar header field");
            field[digits] = 0;
        }
    }
}
