using System.Net.Sockets;
using CriRuntime.Interop;

namespace CriRuntime.Server;

/// <summary>Thrown when the daemon must not start; the message is printed as is.</summary>
public sealed class StartupException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The CRI unix socket. Claimed through an flock'ed lock file beside it, so two daemons
/// can never race for one path; a socket file left by a dead daemon is replaced; a socket that
/// still answers (a daemon not using our lock) is refused. Created 0660: root and the socket's
/// group may talk to the runtime, nobody else.</summary>
public sealed class CriSocket : IDisposable
{
    private readonly FdHandle _lock;
    public Socket Socket { get; }
    public string Path { get; }

    private CriSocket(string path, FdHandle lockFd, Socket socket)
    {
        Path = path;
        _lock = lockFd;
        Socket = socket;
    }

    public static CriSocket Bind(string path)
    {
        var dir = System.IO.Path.GetDirectoryName(path) ?? "/";
        Directory.CreateDirectory(dir);

        var lockPath = path + ".lock";
        var lockFd = FdHandle.Open(lockPath, Libc.O_RDWR | Libc.O_CREAT, 0b110_000_000);
        try
        {
            if (Libc.Flock(lockFd.Fd, Libc.LOCK_EX | Libc.LOCK_NB) != 0)
            {
                var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                if (errno == Errno.EWOULDBLOCK)
                    throw new StartupException($"{path}: another criruntime daemon is serving this socket (lock {lockPath} is held)");
                throw Errno.Exception("flock", lockPath, errno);
            }
            RemoveStale(path);
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Bind(new UnixDomainSocketEndPoint(path));
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
                socket.Listen(512);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new StartupException($"{path}: cannot listen: {e.Message}", e);
            }
            return new CriSocket(path, lockFd, socket);
        }
        catch
        {
            lockFd.Dispose();
            throw;
        }
    }

    private static void RemoveStale(string path)
    {
        var type = Libc.FileType(path);
        if (type is null) return;
        if (type != Libc.S_IFSOCK)
            throw new StartupException($"{path}: exists and is not a socket; refusing to replace it");
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            // Nobody listens: a socket left by a daemon that died. Replace it.
            File.Delete(path);
            return;
        }
        throw new StartupException($"{path}: a live process is already listening on this socket");
    }

    /// <summary>A duplicate of the listening descriptor for Kestrel's ListenHandle, so that Kestrel
    /// and <see cref="Dispose"/> each close a descriptor of their own exactly once.</summary>
    public ulong DuplicateForKestrel() => (ulong)Libc.DupCloexec((int)Socket.Handle, Path);

    public void Dispose()
    {
        Socket.Dispose();
        try { File.Delete(Path); } catch (IOException) { }
        _lock.Dispose();
    }
}
