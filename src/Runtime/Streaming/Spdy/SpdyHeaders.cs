using System.Buffers.Binary;
using System.Text;

namespace CriRuntime.Streaming.Spdy;

/// <summary>The name/value block of SYN_STREAM, SYN_REPLY and HEADERS frames. SPDY/3 sends names in
/// lower case and several values of one name joined by NUL; lookups here ignore case.</summary>
public sealed class SpdyHeaders
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.OrdinalIgnoreCase);

    public int Count => _values.Count;

    public SpdyHeaders Add(string name, string value)
    {
        if (!_values.TryGetValue(name, out var list)) _values[name] = list = [];
        list.Add(value);
        return this;
    }

    public string? Get(string name) => _values.TryGetValue(name, out var list) && list.Count > 0 ? list[0] : null;

    public IReadOnlyList<string> GetAll(string name) => _values.TryGetValue(name, out var list) ? list : [];

    public IEnumerable<KeyValuePair<string, List<string>>> Pairs => _values;

    /// <summary>The uncompressed block: count, then (length, name, length, value) per name.</summary>
    public byte[] Encode()
    {
        var buffer = new MemoryStream();
        Span<byte> n = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(n, (uint)_values.Count);
        buffer.Write(n);
        foreach (var (name, values) in _values)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name.ToLowerInvariant());
            var valueBytes = Encoding.UTF8.GetBytes(string.Join('\0', values));
            BinaryPrimitives.WriteUInt32BigEndian(n, (uint)nameBytes.Length);
            buffer.Write(n);
            buffer.Write(nameBytes);
            BinaryPrimitives.WriteUInt32BigEndian(n, (uint)valueBytes.Length);
            buffer.Write(n);
            buffer.Write(valueBytes);
        }
        return buffer.ToArray();
    }

    public static SpdyHeaders Decode(ReadOnlySpan<byte> block)
    {
        var headers = new SpdyHeaders();
        var count = ReadLength(ref block, "header count");
        for (var i = 0; i < count; i++)
        {
            var name = Encoding.UTF8.GetString(ReadBytes(ref block, "header name"));
            if (name.Length == 0) throw new SpdyProtocolException("empty header name");
            var value = Encoding.UTF8.GetString(ReadBytes(ref block, $"value of {name}"));
            foreach (var v in value.Split('\0')) headers.Add(name, v);
        }
        if (!block.IsEmpty) throw new SpdyProtocolException($"{block.Length} bytes after the header block");
        return headers;
    }

    private static int ReadLength(ref ReadOnlySpan<byte> block, string what)
    {
        if (block.Length < 4) throw new SpdyProtocolException($"header block truncated at {what}");
        var value = BinaryPrimitives.ReadUInt32BigEndian(block);
        block = block[4..];
        if (value > int.MaxValue) throw new SpdyProtocolException($"{what} {value} too large");
        return (int)value;
    }

    private static ReadOnlySpan<byte> ReadBytes(ref ReadOnlySpan<byte> block, string what)
    {
        var length = ReadLength(ref block, what);
        if (block.Length < length) throw new SpdyProtocolException($"header block truncated in {what}");
        var bytes = block[..length];
        block = block[length..];
        return bytes;
    }
}

/// <summary>The peer broke SPDY framing; the connection cannot continue.</summary>
public sealed class SpdyProtocolException(string message) : Exception(message);
