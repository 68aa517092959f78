using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>Loop devices, sparse file copies and file system usage: what the daemon's file-backed
/// writable layers (src/Runtime/Storage) need from libc.</summary>
internal static unsafe partial class Libc
{
    public const ulong LOOP_CTL_GET_FREE = 0x4C82, LOOP_CONFIGURE = 0x4C0A;
    public const uint LO_FLAGS_AUTOCLEAR = 4, LO_FLAGS_DIRECT_IO = 16;
    public const int SEEK_SET = 0, SEEK_DATA = 3, SEEK_HOLE = 4;
    public const int ENXIO = 6;
    public const ulong MS_NOATIME = 1024;

    /// <summary>struct loop_config: the backing fd, the logical block size, a struct loop_info64
    /// (232 bytes; lo_flags at offset 52) and 64 reserved bytes.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 304)]
    public struct LoopConfig
    {
        public uint Fd;
        public uint BlockSize;
        public ulong InfoDevice, InfoInode, InfoRdevice, InfoOffset, InfoSizeLimit;
        public uint InfoNumber, InfoEncryptType, InfoEncryptKeySize, InfoFlags;
    }

    /// <summary>struct statfs on x86-64 and arm64 (all fields 64-bit).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatFs
    {
        public long Type, Bsize;
        public ulong Blocks, Bfree, Bavail, Files, Ffree;
        public long Fsid, Namelen, Frsize, Flags, Spare0, Spare1, Spare2, Spare3;
    }

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(int fd, long offset, int whence);
    [LibraryImport("libc", EntryPoint = "copy_file_range", SetLastError = true)]
    public static partial nint CopyFileRange(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);
    public const uint SPLICE_F_MOVE = 1, SPLICE_F_NONBLOCK = 2;
    /// <summary>Moves up to <paramref name="len"/> bytes between a pipe and another descriptor
    /// inside the kernel (CRIU's streamed images into the checkpoint archive).</summary>
    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    public static partial nint Splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);
    public const int FALLOC_FL_KEEP_SIZE = 1;
    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(int fd, int mode, long offset, long len);
    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);
    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Statfs(string path, StatFs* buf);
}
