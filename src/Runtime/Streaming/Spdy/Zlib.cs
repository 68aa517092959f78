using System.Runtime.InteropServices;

namespace CriRuntime.Streaming.Spdy;

/// <summary>The system zlib (libz.so.1). System.IO.Compression cannot preset a dictionary, which
/// SPDY header compression needs; zlib's deflateSetDictionary/inflateSetDictionary can.</summary>
internal static unsafe partial class Zlib
{
    private const string Lib = "libz.so.1";
    public const int Z_OK = 0, Z_STREAM_END = 1, Z_NEED_DICT = 2, Z_BUF_ERROR = -5;
    public const int Z_SYNC_FLUSH = 2;
    public const int Z_DEFLATED = 8;

    /// <summary>z_stream on LP64 (zlib.h): 112 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ZStream
    {
        public byte* NextIn;
        public uint AvailIn;
        public nuint TotalIn;
        public byte* NextOut;
        public uint AvailOut;
        public nuint TotalOut;
        public byte* Msg;
        public void* State;
        public void* ZAlloc;
        public void* ZFree;
        public void* Opaque;
        public int DataType;
        public nuint Adler;
        public nuint Reserved;
    }

    [LibraryImport(Lib, EntryPoint = "zlibVersion")]
    public static partial byte* Version();

    [LibraryImport(Lib, EntryPoint = "deflateInit2_")]
    public static partial int DeflateInit2(ZStream* strm, int level, int method, int windowBits, int memLevel, int strategy, byte* version, int streamSize);

    [LibraryImport(Lib, EntryPoint = "deflateSetDictionary")]
    public static partial int DeflateSetDictionary(ZStream* strm, byte* dictionary, uint length);

    [LibraryImport(Lib, EntryPoint = "deflate")]
    public static partial int Deflate(ZStream* strm, int flush);

    [LibraryImport(Lib, EntryPoint = "deflateEnd")]
    public static partial int DeflateEnd(ZStream* strm);

    [LibraryImport(Lib, EntryPoint = "inflateInit2_")]
    public static partial int InflateInit2(ZStream* strm, int windowBits, byte* version, int streamSize);

    [LibraryImport(Lib, EntryPoint = "inflateSetDictionary")]
    public static partial int InflateSetDictionary(ZStream* strm, byte* dictionary, uint length);

    [LibraryImport(Lib, EntryPoint = "inflate")]
    public static partial int Inflate(ZStream* strm, int flush);

    [LibraryImport(Lib, EntryPoint = "inflateEnd")]
    public static partial int InflateEnd(ZStream* strm);

    public static string Message(ZStream* strm, int code) =>
        strm->Msg is null ? $"zlib error {code}" : $"zlib error {code}: {Marshal.PtrToStringUTF8((nint)strm->Msg)}";
}
