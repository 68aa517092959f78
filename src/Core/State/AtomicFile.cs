using System.Runtime.InteropServices;
using System.Text;

namespace CriRuntime.State;

/// <summary>Writes a file so that a crash at any moment leaves either the old or the new content,
/// never a mix: write a temporary file beside it, fsync it, rename it over the target, fsync the
/// directory so the rename itself is durable. Shared by the daemon and the shim.
///
/// <c>durable: false</c> skips both fsyncs and keeps the rename. A process killed at any point
/// (kill -9 of the daemon or a shim) still leaves the old or the new content, since the page
/// cache outlives it; only a crash of the host itself can lose the write. That is for runtime
/// state that a reboot makes meaningless anyway (pids, a running container's status), which lives
/// under the state directory, /run: a tmpfs on a real host.</summary>
public static partial class AtomicFile
{
    public static void Write(string path, ReadOnlySpan<byte> content, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite, bool durable = true)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Environment.CurrentManagedThreadId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, new FileStreamOptions
            {
                Mode = FileMode.Create,
                Access = FileAccess.Write,
                Share = FileShare.None,
                UnixCreateMode = mode,
            }))
            {
                fs.Write(content);
                fs.Flush(flushToDisk: durable);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
        if (durable) FsyncDirectory(dir);
    }

    public static void WriteText(string path, string content) => Write(path, Encoding.UTF8.GetBytes(content));

    private static void FsyncDirectory(string dir)
    {
        // .NET refuses to open directories as files, so this is a plain open(2) + fsync(2).
        const int O_RDONLY = 0, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;
        var fd = Open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) throw Error("open", dir);
        try
        {
            if (Fsync(fd) != 0) throw Error("fsync", dir);
        }
        finally
        {
            Close(fd);
        }
    }

    private static IOException Error(string operation, string path)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new IOException($"{operation} {path}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})") { HResult = errno };
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
