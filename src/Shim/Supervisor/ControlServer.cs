using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Kernel;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The shim's control socket (docs/shim-protocol.md): newline-delimited JSON requests,
/// one JSON line answered per request. Raw blocking sockets on dedicated threads: an idle shim
/// then has no epoll engine and no thread pool, only threads parked in accept(2) and read(2).</summary>
public sealed unsafe partial class ControlServer : IDisposable
{
    private readonly string _path;
    private readonly Func<ShimRequest, ShimResponse> _handle;
    private readonly ShimLog _log;
    private readonly FdHandle _listen;
    // A plain object, not System.Threading.Lock: Close waits on it with Monitor.Wait.
    private readonly object _lock = new();
    private int _inflight;
    private volatile bool _closing;

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);
    [LibraryImport("libc", EntryPoint = "bind", SetLastError = true)]
    private static partial int Bind(int fd, byte* addr, int len);
    [LibraryImport("libc", EntryPoint = "listen", SetLastError = true)]
    private static partial int Listen(int fd, int backlog);
    [LibraryImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static partial int Accept4(int fd, byte* addr, int* len, int flags);
    [LibraryImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    private static partial int Shutdown(int fd, int how);

    private const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;

    public ControlServer(string path, Func<ShimRequest, ShimResponse> handle, ShimLog log)
    {
        _path = path;
        _handle = handle;
        _log = log;
        var bytes = Encoding.UTF8.GetBytes(path);
        if (bytes.Length > 107) throw new ArgumentException($"control socket path is longer than 107 bytes: {path}");
        File.Delete(path); // a stale socket of a previous shim of this container
        var fd = Socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw KernelException.Last("socket", path);
        _listen = new FdHandle(fd);
        var addr = stackalloc byte[110];
        new Span<byte>(addr, 110).Clear();
        *(ushort*)addr = AF_UNIX;
        bytes.CopyTo(new Span<byte>(addr + 2, 108));
        if (Bind(fd, addr, 2 + bytes.Length + 1) != 0) throw KernelException.Last("bind", path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (Listen(fd, 16) != 0) throw KernelException.Last("listen", path);
        new Thread(AcceptLoop, 128 * 1024) { IsBackground = true, Name = "control-accept" }.Start();
    }

    private void AcceptLoop()
    {
        while (!_closing)
        {
            var fd = Accept4(_listen.Fd, null, null, SOCK_CLOEXEC);
            if (fd < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Errnos.EINTR || errno == 103 /* ECONNABORTED */) continue;
                if (!_closing) _log.Error($"accept {_path}: errno {errno}");
                return;
            }
            var conn = new FdHandle(fd);
            new Thread(() => Serve(conn), 256 * 1024) { IsBackground = true, Name = "control-conn" }.Start();
        }
    }

    private void Serve(FdHandle conn)
    {
        using (conn)
        {
            var pending = new List<byte>();
            var buffer = new byte[4096];
            while (true)
            {
                int n;
                try { n = Native.ReadSome(conn.Fd, buffer, _path); }
                catch (KernelException) { return; }
                if (n == 0) return;
                var span = buffer.AsSpan(0, n);
                int nl;
                while ((nl = span.IndexOf((byte)'\n')) >= 0)
                {
                    foreach (var b in span[..nl]) pending.Add(b);
                    span = span[(nl + 1)..];
                    var line = pending.ToArray();
                    pending.Clear();
                    if (!Answer(conn, line)) return;
                }
                foreach (var b in span) pending.Add(b);
                if (pending.Count > 64 * 1024) return; // not a client of ours
            }
        }
    }

    private bool Answer(FdHandle conn, byte[] line)
    {
        lock (_lock) _inflight++;
        try
        {
            ShimResponse response;
            try
            {
                var request = JsonSerializer.Deserialize(line, ShimJsonContext.Default.ShimRequest)
                    ?? throw new InvalidDataException("empty request");
                response = _handle(request);
            }
            catch (Exception e) when (e is JsonException or InvalidDataException or IOException or InvalidOperationException or ArgumentException)
            {
                response = new ShimResponse { Ok = false, Error = e.Message };
            }
            var bytes = JsonSerializer.SerializeToUtf8Bytes(response, ShimJsonContext.Default.ShimResponse);
            try
            {
                Native.WriteAll(conn.Fd, bytes, _path);
                Native.WriteAll(conn.Fd, "\n"u8, _path);
                return true;
            }
            catch (KernelException) { return false; } // the client went away
        }
        finally
        {
            lock (_lock)
            {
                _inflight--;
                Monitor.PulseAll(_lock);
            }
        }
    }

    /// <summary>Stops accepting, removes the socket (clients then read state.json) and waits up to
    /// <paramref name="grace"/> for requests being answered (e.g. "wait" callers learning of the exit).</summary>
    public void Close(TimeSpan grace)
    {
        _closing = true;
        try { File.Delete(_path); } catch (IOException) { }
        Shutdown(_listen.Fd, 2); // wakes the accept(2)
        var deadline = DateTime.UtcNow + grace;
        lock (_lock)
        {
            while (_inflight > 0)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_lock, left)) break;
            }
        }
    }

    public void Dispose() => _listen.Dispose();
}
