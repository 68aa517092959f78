using CriRuntime.Shim.Kernel;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Replaces a file so that a crash at any moment leaves the old or the new content:
/// temp file beside it, fsync, rename over, fsync the directory (the rename itself durable).</summary>
public static class AtomicFile
{
    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Environment.CurrentManagedThreadId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, new FileStreamOptions
            {
                Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead,
            }))
            {
                fs.Write(content);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
        using var dirFd = LinuxKernel.Instance.Open(dir, Native.O_RDONLY | Native.O_DIRECTORY, 0);
        if (Native.Fsync(dirFd.Fd) != 0) throw KernelException.Last("fsync", dir);
    }

    public static void WriteText(string path, string text) => Write(path, System.Text.Encoding.UTF8.GetBytes(text));
}
