using System.Text;

namespace CriRuntime.Images.Snapshots;

/// <summary>Reads the raw bytes of PAX SCHILY.xattr.* records from a tar stream, which
/// System.Formats.Tar cannot give (it decodes every PAX value as UTF-8, losing binary ones such as
/// security.capability). Only headers are parsed; file data is skipped. Used for a second pass
/// over the few layers that have such values.</summary>
public static class PaxXattrScanner
{
    private const int Block = 512;
    private const string XattrPrefix = "SCHILY.xattr.";

    public sealed record RawXattr(string Path, string Name, byte[] Value);

    public static IEnumerable<RawXattr> Scan(Stream tar)
    {
        var header = new byte[Block];
        Dictionary<string, byte[]>? pax = null;
        string? longName = null;
        while (ReadExactly(tar, header))
        {
            if (header.All(b => b == 0)) yield break;
            var size = ParseNumber(header.AsSpan(124, 12));
            var type = (char)header[156];
            switch (type)
            {
                case 'x':
                    pax = ParseRecords(ReadData(tar, size));
                    continue;
                case 'g':
                    Skip(tar, size);
                    continue;
                case 'L':
                    longName = Encoding.UTF8.GetString(ReadData(tar, size)).TrimEnd('\0');
                    continue;
                case 'K':
                    Skip(tar, size);
                    continue;
            }
            var path = pax?.TryGetValue("path", out var p) == true ? Encoding.UTF8.GetString(p) : longName ?? HeaderName(header);
            if (pax?.TryGetValue("size", out var s) == true && long.TryParse(Encoding.ASCII.GetString(s), out var paxSize)) size = paxSize;
            if (pax is not null)
                foreach (var (key, value) in pax)
                    if (key.StartsWith(XattrPrefix, StringComparison.Ordinal))
                        yield return new RawXattr(path, key[XattrPrefix.Length..], value);
            pax = null;
            longName = null;
            // Only regular files (and old-style '\0' ones) carry data after the header.
            if (type is '0' or '\0' or '7') Skip(tar, size);
        }
    }

    private static string HeaderName(byte[] header)
    {
        var name = CString(header.AsSpan(0, 100));
        var isUstar = header.AsSpan(257, 5).SequenceEqual("ustar"u8);
        var prefix = isUstar ? CString(header.AsSpan(345, 155)) : "";
        return prefix.Length > 0 ? $"{prefix}/{name}" : name;
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        var end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    /// <summary>Octal ASCII (space or NUL terminated), or GNU base-256 when the high bit is set.</summary>
    internal static long ParseNumber(ReadOnlySpan<byte> field)
    {
        if ((field[0] & 0x80) != 0)
        {
            long v = field[0] & 0x7f;
            foreach (var b in field[1..]) v = (v << 8) | b;
            return v;
        }
        long n = 0;
        foreach (var b in field)
        {
            if (b is (byte)' ' or 0) { if (n != 0) break; continue; }
            if (b is < (byte)'0' or > (byte)'7') throw new InvalidDataException("malformed tar header number");
            n = n * 8 + (b - '0');
        }
        return n;
    }

    /// <summary>"LEN key=value\n" records; LEN counts the whole record.</summary>
    internal static Dictionary<string, byte[]> ParseRecords(byte[] data)
    {
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var i = 0;
        while (i < data.Length && data[i] != 0)
        {
            var space = Array.IndexOf(data, (byte)' ', i);
            if (space < 0 || !int.TryParse(Encoding.ASCII.GetString(data, i, space - i), out var len) || len <= 0 || i + len > data.Length)
                throw new InvalidDataException("malformed PAX record");
            var record = data.AsSpan(space + 1, i + len - space - 1);
            var eq = record.IndexOf((byte)'=');
            if (eq < 0 || record[^1] != (byte)'\n') throw new InvalidDataException("malformed PAX record");
            result[Encoding.UTF8.GetString(record[..eq])] = record[(eq + 1)..^1].ToArray();
            i += len;
        }
        return result;
    }

    private static byte[] ReadData(Stream tar, long size)
    {
        if (size is < 0 or > 1 << 24) throw new InvalidDataException($"PAX header of {size} bytes");
        var data = new byte[size];
        if (!ReadExactly(tar, data)) throw new EndOfStreamException("tar ended inside a header");
        SkipPadding(tar, size);
        return data;
    }

    /// <summary>Skips an entry's data and the padding to the next block.</summary>
    private static void Skip(Stream tar, long size) => SkipExactly(tar, (size + Block - 1) / Block * Block);

    private static void SkipPadding(Stream tar, long size) => SkipExactly(tar, (Block - size % Block) % Block);

    private static void SkipExactly(Stream tar, long count)
    {
        var buffer = new byte[1 << 16];
        var left = count;
        while (left > 0)
        {
            var n = tar.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0) throw new EndOfStreamException("tar ended inside an entry");
            left -= n;
        }
    }

    private static bool ReadExactly(Stream s, byte[] buffer)
    {
        var read = s.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        if (read == 0) return false;
        if (read < buffer.Length) throw new EndOfStreamException("tar ended inside a block");
        return true;
    }
}
