using System.Text;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>The line protocol on the socketpair between the supervisor and the container init
/// (fd 3 in the init). Supervisor → init: "go" (placed in its cgroup), "start". Init →
/// supervisor: "warn &lt;text&gt;", "created", "error &lt;text&gt;". A successful exec closes the
/// init's end (it is close-on-exec by then), so end-of-file after "start" means "running".
/// Blocking, byte-at-a-time reads: the messages are a few bytes and the peer is one process.</summary>
public sealed class SyncChannel(FdHandle fd) : IDisposable
{
    public FdHandle Handle => fd;
    private readonly List<int> _fds = [];

    /// <summary>A descriptor that came with a received line (the "pty" master), or null.</summary>
    public FdHandle? TakeFd()
    {
        if (_fds.Count == 0) return null;
        var first = _fds[0];
        _fds.RemoveAt(0);
        return new FdHandle(first);
    }

    public void Send(string line) => Libc.WriteAll(fd.Fd, Encoding.UTF8.GetBytes(line.Replace('\n', ' ') + "\n"), "sync socket");

    /// <summary>The next line, or null at end of file.</summary>
    public string? Receive()
    {
        var buffer = new List<byte>(64);
        Span<byte> one = stackalloc byte[1];
        while (true)
        {
            int n;
            // recvmsg, not read: a read(2) would silently close descriptors sent with the line.
            try { n = Shim.Client.FdPassing.Receive(fd.Fd, one, _fds, dontWait: false); }
            catch (IOException e) when (e.HResult == 104 /* ECONNRESET */) { n = 0; }
            if (n == 0) return buffer.Count == 0 ? null : Encoding.UTF8.GetString(buffer.ToArray());
            if (one[0] == (byte)'\n') return Encoding.UTF8.GetString(buffer.ToArray());
            buffer.Add(one[0]);
        }
    }

    public void Dispose()
    {
        while (TakeFd() is { } extra) extra.Dispose();
        fd.Dispose();
    }
}
