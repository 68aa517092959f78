using System.Buffers.Binary;
using System.Text;

namespace CriRuntime.Checkpoint;

/// <summary>CRIU's <c>utsns-ID.img</c>: the hostname and domainname of the uts namespace the
/// checkpointed container was in (its old pod's). `criu restore` writes them into the uts
/// namespace the restored tree ends up in, also one it joined with <c>--join-ns</c>: restored into
/// the new pod's, the old pod's hostname would replace the new pod's for every container of the
/// pod. So before a restore the images are rewritten with the names the new pod's namespace
/// already has, and CRIU's write changes nothing.
///
/// The format (criu/image.c, images/utsns.proto): the common image magic and the utsns magic
/// (two little-endian u32), then one entry: its length (u32) and a protobuf <c>utsns_entry</c>
/// {1: nodename, 2: domainname}. The file comes from the archive, so only that shape is accepted.</summary>
public static class UtsImage
{
    private const uint CommonMagic = 0x54564319, UtsnsMagic = 0x54473203;
    private const int MaxSize = 64 * 1024;

    /// <summary>The uts images in a CRIU image directory.</summary>
    public static IReadOnlyList<string> Find(string imagesDir) =>
        [.. Directory.GetFiles(imagesDir, "utsns-*.img").Order(StringComparer.Ordinal)];

    /// <summary>Replaces the names in <paramref name="path"/>; <see cref="InvalidDataException"/>
    /// when it is not a uts image.</summary>
    public static void Rewrite(string path, string nodename, string domainname)
    {
        Read(path); // refuses anything but a uts image
        File.WriteAllBytes(path, Encode(nodename, domainname));
    }

    public static (string Nodename, string Domainname) Read(string path)
    {
        var name = Path.GetFileName(path);
        var info = new FileInfo(path);
        if (info.LinkTarget is not null || !info.Exists || info.Length > MaxSize)
            throw new InvalidDataException($"checkpoint archive: checkpoint/{name}: not a regular file of at most {MaxSize} bytes");
        var bytes = File.ReadAllBytes(path);
        InvalidDataException Bad(string why) => new($"checkpoint archive: checkpoint/{name}: {why}");
        if (bytes.Length < 12 || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != CommonMagic || BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)) != UtsnsMagic)
            throw Bad("not a CRIU uts namespace image (magic)");
        var length = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        if (length != bytes.Length - 12) throw Bad($"entry length {length} does not match the file ({bytes.Length - 12} bytes after the header)");
        string? node = null, domain = null;
        var entry = bytes.AsSpan(12);
        while (entry.Length > 0)
        {
            var tag = Varint(ref entry) ?? throw Bad("truncated field tag");
            if ((tag & 7) != 2) throw Bad($"field {tag >> 3} is not a string");
            var size = Varint(ref entry) ?? throw Bad("truncated field length");
            if (size > (ulong)entry.Length) throw Bad("field runs past the entry");
            var value = Encoding.UTF8.GetString(entry[..(int)size]);
            entry = entry[(int)size..];
            if (tag >> 3 == 1) node = value;
            else if (tag >> 3 == 2) domain = value;
        }
        return (node ?? throw Bad("no nodename"), domain ?? throw Bad("no domainname"));
    }

    /// <summary>A uts image holding these names.</summary>
    public static byte[] Encode(string nodename, string domainname)
    {
        var entry = new List<byte>();
        foreach (var (field, value) in new[] { (1, nodename), (2, domainname) })
        {
            var utf8 = Encoding.UTF8.GetBytes(value);
            entry.Add((byte)(field << 3 | 2));
            for (var n = (uint)utf8.Length; ; n >>= 7)
            {
                if (n < 0x80) { entry.Add((byte)n); break; }
                entry.Add((byte)(n & 0x7F | 0x80));
            }
            entry.AddRange(utf8);
        }
        var result = new byte[12 + entry.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(result, CommonMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(4), UtsnsMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(8), (uint)entry.Count);
        entry.CopyTo(result, 12);
        return result;
    }

    private static ulong? Varint(ref Span<byte> s)
    {
        ulong value = 0;
        for (var i = 0; i < 10 && i < s.Length; i++)
        {
            value |= (ulong)(s[i] & 0x7F) << (7 * i);
            if ((s[i] & 0x80) == 0)
            {
                s = s[(i + 1)..];
                return value;
            }
        }
        return null;
    }
}
