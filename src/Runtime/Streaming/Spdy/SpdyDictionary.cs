using System.Buffers.Binary;
using System.Text;

namespace CriRuntime.Streaming.Spdy;

/// <summary>The zlib dictionary that SPDY/3 header blocks are compressed with (SPDY/3 draft,
/// section 2.6.10.1): common header names, each with a 4-byte big-endian length, then a run of
/// common values. 1423 bytes; its Adler-32, the dictionary id in the zlib header, is 0xE3C6A7C2.</summary>
public static class SpdyDictionary
{
    private static readonly string[] Names =
    [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
        "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
        "content-base", "content-encoding", "content-language", "content-length", "content-location",
        "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
        "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
        "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
        "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
        "public", "set-cookie", "keep-alive", "origin",
    ];

    private const string Values =
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505" +
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized" +
        "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable" +
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,public" +
        "privatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

    public static ReadOnlyMemory<byte> Bytes { get; } = Build();

    private static byte[] Build()
    {
        var bytes = new List<byte>(1423);
        Span<byte> len = stackalloc byte[4];
        foreach (var name in Names)
        {
            BinaryPrimitives.WriteUInt32BigEndian(len, (uint)name.Length);
            bytes.AddRange(len);
            bytes.AddRange(Encoding.ASCII.GetBytes(name));
        }
        bytes.AddRange(Encoding.ASCII.GetBytes(Values));
        return [.. bytes];
    }
}
