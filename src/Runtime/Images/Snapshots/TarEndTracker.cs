namespace CriRuntime.Images.Snapshots;

/// <summary>Passes a layer tar through to the tar reader and remembers where the stream ended
/// relative to the last entry, so that an end of stream can be told apart as a clean end of
/// archive or a truncation.
///
/// Some writers stop right after the last entry: umoci 0.4.7 as packaged by Debian leaves out
/// the two zero blocks and even the last entry's padding. Go's archive/tar (and with it
/// containerd and CRI-O) reads such a tar to the end, and the layer digest has already proven
/// these are the bytes the image author published, so the same tars are accepted here: the
/// stream may end after the last entry's data, anywhere in its padding, or after whole zero
/// blocks. Ending inside an entry's data or inside a header (a partial block, or one that is not
/// all zeros) stays a truncation.</summary>
internal sealed class TarEndTracker(Stream inner) : IO.NonSeekableStream
{
    private const int Block = 512;

    private long _position;
    private long _lastNonZeroEnd;
    private long _dataStart;
    private long _dataEnd;
    private string? _entry;

    /// <summary>The underlying stream returned 0 bytes for a non-empty read.</summary>
    public bool AtEnd { get; private set; }

    /// <summary>Called after the reader returned an entry: its data (if any) comes next.</summary>
    public void EntryRead(string name, long dataLength)
    {
        _entry = name;
        _dataStart = _position;
        _dataEnd = _position + dataLength;
    }

    /// <summary>True when the stream has ended after the last entry's data, with only zero bytes
    /// since, within its padding or on a block boundary after it.</summary>
    public bool EndedCleanly
    {
        get
        {
            if (!AtEnd || _position < _dataEnd || _lastNonZeroEnd > _dataEnd) return false;
            var padded = (_dataEnd + Block - 1) / Block * Block;
            return _position <= padded || (_position - padded) % Block == 0;
        }
    }

    /// <summary>Where a stream that did not end cleanly was cut, for the error message.</summary>
    public string Truncation() =>
        _position < _dataEnd
            ? $"the tar ends inside the data of entry \"{_entry}\" ({_position - _dataStart} of {_dataEnd - _dataStart} bytes)"
            : _entry is null
                ? $"the tar ends inside its first header (after {_position} bytes)"
                : $"the tar ends inside the header that follows entry \"{_entry}\"";

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = inner.Read(buffer);
        if (n == 0 && buffer.Length > 0) AtEnd = true;
        var last = buffer[..n].LastIndexOfAnyExcept((byte)0);
        if (last >= 0) _lastNonZeroEnd = _position + last + 1;
        _position += n;
        return n;
    }

    public override bool CanRead => true;
}
