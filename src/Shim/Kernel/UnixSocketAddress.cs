using System.Text;

namespace CriRuntime.Shim.Kernel;

/// <summary>A <c>struct sockaddr_un</c> for a path (the control socket's bind and connect):
/// family AF_UNIX, then the path's bytes, NUL-terminated. sun_path holds 108 bytes, so a path of
/// more than 107 is refused naming it rather than truncated.</summary>
internal unsafe struct UnixSocketAddress
{
    public const int AF_UNIX = 1;
    public const int MaxPathBytes = 107;
    private fixed byte _bytes[110];

    /// <summary>The length to pass to bind(2)/connect(2): the family, the path and its NUL.</summary>
    public int Length { get; private set; }

    public static UnixSocketAddress For(string path)
    {
        var bytes = Encoding.UTF8.GetBytes(path);
        if (bytes.Length > MaxPathBytes) throw new ArgumentException($"unix socket path is longer than {MaxPathBytes} bytes: {path}");
        var a = new UnixSocketAddress { Length = 2 + bytes.Length + 1 };
        var raw = new Span<byte>(a._bytes, 110);
        raw.Clear();
        raw[0] = AF_UNIX; // sa_family_t, little-endian (the shim runs on x86_64 and aarch64)
        bytes.CopyTo(raw[2..]);
        return a;
    }

    /// <summary>The bytes as the kernel reads them (for tests).</summary>
    public readonly byte[] ToArray()
    {
        fixed (byte* p = _bytes) return new Span<byte>(p, Length).ToArray();
    }
}
