using CriRuntime.Interop;
namespace CriRuntime.Cgroups;

/// <summary>The kernel boundary of the cgroup code: every read and write of a cgroup file goes
/// through here, so managers are unit-tested against a temp tree that stands in for cgroupfs.
/// Paths are absolute.</summary>
public interface ICgroupFs
{
    /// <summary>Writes the whole value with one write(2) on a fresh O_WRONLY descriptor: cgroupfs
    /// parses each write on its own, so buffering or truncating could split or corrupt a value.
    /// Throws <see cref="CgroupException"/> naming the file, the value and errno.</summary>
    void Write(string file, string value);

    /// <summary>The file's content, or null when it does not exist.</summary>
    string? Read(string file);

    /// <summary>Creates one directory; false when it already existed.</summary>
    bool Mkdir(string dir);

    /// <summary>Removes one (empty) cgroup directory; false when it was already gone.</summary>
    bool Rmdir(string dir);

    bool Exists(string path);

    /// <summary>Names of the subdirectories (child cgroups) of a directory; empty when it is missing.</summary>
    IReadOnlyList<string> ListDirectories(string dir);
}

/// <summary>The real cgroupfs.</summary>
public sealed class CgroupFs : ICgroupFs
{
    public static readonly CgroupFs Instance = new();

    public unsafe void Write(string file, string value)
    {
        int fd;
        do { fd = Libc.Open(file, Libc.O_WRONLY | Libc.O_CLOEXEC, 0); }
        while (fd < 0 && Errno.Current == Errno.EINTR);
        if (fd < 0) throw CgroupException.Last($"write {value} to", file);
        try
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(value);
            nint written;
            fixed (byte* p = bytes)
            {
                do { written = Libc.Write(fd, p, bytes.Length); }
                while (written < 0 && Errno.Current == Errno.EINTR);
            }
            if (written < 0) throw CgroupException.Last($"write {value} to", file);
            // cgroupfs consumes a value in one go; a short write would mean a partial value was applied.
            if (written != bytes.Length)
                throw new CgroupException($"write {value} to {file}: short write ({written} of {bytes.Length} bytes)");
        }
        finally
        {
            // close(2) errors are not retried: the fd is gone either way, and cgroupfs reports
            // failures at write time.
            Libc.Close(fd);
        }
    }

    public string? Read(string file)
    {
        try { return File.ReadAllText(file); }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
    }

    public bool Mkdir(string dir)
    {
        if (Libc.Mkdir(dir, 0x1ED /* 0755 */) == 0) return true;
        var errno = Errno.Current;
        if (errno == Errno.EEXIST) return false;
        throw CgroupException.FromErrno("mkdir", dir, errno);
    }

    public bool Rmdir(string dir)
    {
        if (Libc.Rmdir(dir) == 0) return true;
        var errno = Errno.Current;
        if (errno == Errno.ENOENT) return false;
        throw CgroupException.FromErrno("rmdir", dir, errno);
    }

    public bool Exists(string path) => System.IO.Path.Exists(path);

    public IReadOnlyList<string> ListDirectories(string dir)
    {
        try { return [.. Directory.EnumerateDirectories(dir).Select(System.IO.Path.GetFileName).OfType<string>()]; }
        catch (DirectoryNotFoundException) { return []; }
    }
}
