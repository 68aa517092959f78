using System.Runtime.InteropServices;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The sockets of clients attached to the container's output, per stream ("stdout",
/// "stderr"). The log pumps copy what they read to each one with a non-blocking send: a client
/// that does not keep up (its socket buffer full) or has gone is dropped, never allowed to stall
/// the container's output or its log. Empty (no allocation beyond the dictionary) while nobody
/// is attached, which is the idle case.</summary>
public sealed unsafe partial class Attachers
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, List<FdHandle>> _by = new(StringComparer.Ordinal);
    private bool _closed;


    /// <summary>Shut down before closing: a relay thread may hold another reference to the socket
    /// (so close alone would not be end of file for the client) and is woken by it.</summary>
    private static void Drop(FdHandle socket)
    {
        Libc.Shutdown(socket.Fd, 2 /* SHUT_RDWR */);
        socket.Dispose();
    }

    /// <summary>No client is attached (the monitor cannot serve attached clients).</summary>
    public bool IsEmpty
    {
        get { lock (_lock) return _by.Values.All(l => l.Count == 0); }
    }

    /// <summary>Adds a client; false when the output has already ended (the caller closes it).</summary>
    public bool Add(string stream, FdHandle socket)
    {
        lock (_lock)
        {
            if (_closed) return false;
            if (!_by.TryGetValue(stream, out var list)) _by[stream] = list = [];
            list.Add(socket);
            return true;
        }
    }

    public void Broadcast(string stream, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (!_by.TryGetValue(stream, out var list) || list.Count == 0) return;
            for (var i = list.Count - 1; i >= 0; i--)
                if (!SendAll(list[i].Fd, data)) { Drop(list[i]); list.RemoveAt(i); }
        }
    }

    private static bool SendAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var off = 0;
            while (off < data.Length)
            {
                var n = Libc.Send(fd, p + off, data.Length - off, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
                if (n < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                    return false; // EAGAIN (slow client), EPIPE/ECONNRESET (gone)
                }
                off += (int)n;
            }
            return true;
        }
    }

    /// <summary>The output of <paramref name="stream"/> has ended: its clients see end of file.</summary>
    public void End(string stream)
    {
        lock (_lock)
        {
            if (_by.Remove(stream, out var list)) foreach (var s in list) Drop(s);
        }
    }

    /// <summary>The container has exited: every client sees end of file, none can be added.</summary>
    public void CloseAll()
    {
        lock (_lock)
        {
            _closed = true;
            foreach (var list in _by.Values) foreach (var s in list) Drop(s);
            _by.Clear();
        }
    }
}
