using CriRuntime.Interop;
using System.Text;

namespace CriRuntime.Files;

/// <summary>Writes a file so that a crash at any moment leaves either the old or the new content,
/// never a mix: write a temporary file beside it, fsync it, rename it over the target, fsync the
/// directory so the rename itself is durable. Shared by the daemon and the shim.
///
/// <c>durable: false</c> skips both fsyncs and keeps the rename. A process killed at any point
/// (kill -9 of the daemon or a shim) still leaves the old or the new content, since the page
/// cache outlives it; only a crash of the host itself can lose the write. That is for runtime
/// state that a reboot makes meaningless anyway (pids, a running container's status), which lives
/// under the state directory, /run: a tmpfs on a real host.</summary>
public static class AtomicFile
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
        using var fd = FdHandle.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY);
        Errno.Check(Libc.Fsync(fd.Fd), "fsync", dir);
    }
}
