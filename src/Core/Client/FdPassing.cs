using System.Runtime.InteropServices;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Client;

/// <summary>File descriptors over a unix stream socket (sendmsg/recvmsg with SCM_RIGHTS), as
/// the shim hands the daemon the stdio of an interactive exec or attach. Framing: a message that
/// carries descriptors is one whole line sent with one sendmsg. Linux's recvmsg on a stream socket
/// may join earlier data to that message but always stops right after it (unix_stream_read_generic
/// breaks once it has taken descriptors), so the descriptors a read returns belong to the last
/// line that read completed (<see cref="FdLineReader"/>).</summary>
public static unsafe class FdPassing
{
    /// <summary>At most this many descriptors per message (stdin, stdout, stderr and spare).</summary>
    public const int MaxFds = 4;

    private const int SOL_SOCKET = 1, SCM_RIGHTS = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec { public void* Base; public nuint Len; }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name; public uint NameLen;
        public IoVec* Iov; public nuint IovLen;
        public void* Control; public nuint ControlLen;
        public int Flags;
    }

    // struct cmsghdr { size_t len; int level; int type; } followed by the data, 8-aligned.
    private const int CmsgHeader = 16;
    private static int CmsgSpace(int dataLen) => CmsgHeader + ((dataLen + 7) & ~7);

    /// <summary>Writes all of <paramref name="data"/>; <paramref name="fds"/> go with its first
    /// byte. Blocking socket. Throws IOException (with the errno) when the peer is gone.</summary>
    public static void Send(int socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds)
    {
        if (data.IsEmpty) throw new ArgumentException("descriptors need at least one byte of data to ride on");
        if (fds.Length > MaxFds) throw new ArgumentException($"at most {MaxFds} descriptors per message");
        var control = stackalloc byte[CmsgSpace(MaxFds * sizeof(int))];
        fixed (byte* p = data)
        {
            var off = 0;
            var first = true;
            while (off < data.Length)
            {
                var iov = new IoVec { Base = p + off, Len = (nuint)(data.Length - off) };
                var msg = new MsgHdr { Iov = &iov, IovLen = 1 };
                if (first && fds.Length > 0)
                {
                    var len = CmsgSpace(fds.Length * sizeof(int));
                    new Span<byte>(control, len).Clear();
                    *(nuint*)control = (nuint)(CmsgHeader + fds.Length * sizeof(int));
                    *(int*)(control + 8) = SOL_SOCKET;
                    *(int*)(control + 12) = SCM_RIGHTS;
                    fds.CopyTo(new Span<int>(control + CmsgHeader, fds.Length));
                    msg.Control = control;
                    msg.ControlLen = (nuint)len;
                }
                var n = Libc.SendMsg(socket, &msg, Libc.MSG_NOSIGNAL);
                if (n < 0)
                {
                    var errno = Errno.Current;
                    if (errno == Errno.EINTR) continue;
                    throw Errno.Exception("sendmsg", $"fd {socket}", errno);
                }
                first = false;
                off += (int)n;
            }
        }
    }

    /// <summary>One recvmsg(2): bytes read (0 = end of file, -1 = nothing available without
    /// blocking when <paramref name="dontWait"/>); received descriptors (close-on-exec) are added
    /// to <paramref name="fds"/>, which then owns them.</summary>
    public static int Receive(int socket, Span<byte> buffer, List<int> fds, bool dontWait)
    {
        var control = stackalloc byte[CmsgSpace(MaxFds * sizeof(int))];
        var controlLen = CmsgSpace(MaxFds * sizeof(int));
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var iov = new IoVec { Base = p, Len = (nuint)buffer.Length };
                var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = (nuint)controlLen };
                var n = Libc.RecvMsg(socket, &msg, Libc.MSG_CMSG_CLOEXEC | (dontWait ? Libc.MSG_DONTWAIT : 0));
                if (n < 0)
                {
                    var errno = Errno.Current;
                    if (errno == Errno.EINTR) continue;
                    if (errno == Errno.EAGAIN && dontWait) return -1;
                    throw Errno.Exception("recvmsg", $"fd {socket}", errno);
                }
                CollectFds(control, (int)msg.ControlLen, fds);
                return (int)n;
            }
        }
    }

    private static void CollectFds(byte* control, int length, List<int> fds)
    {
        var off = 0;
        while (off + CmsgHeader <= length)
        {
            var len = (int)*(nuint*)(control + off);
            if (len < CmsgHeader || off + len > length) break;
            if (*(int*)(control + off + 8) == SOL_SOCKET && *(int*)(control + off + 12) == SCM_RIGHTS)
                for (var i = 0; i < (len - CmsgHeader) / sizeof(int); i++)
                    fds.Add(*(int*)(control + off + CmsgHeader + i * sizeof(int)));
            off += (len + 7) & ~7;
        }
    }
}

/// <summary>Reads newline-terminated messages and the descriptors that came with them from a
/// .NET <see cref="System.Net.Sockets.Socket"/>: waits with a zero-byte receive (the socket stays
/// on .NET's event loop), then reads with a non-blocking recvmsg.</summary>
public sealed class FdLineReader(System.Net.Sockets.Socket socket)
{
    private readonly List<byte> _pending = [];
    private readonly Queue<(string Line, int[] Fds)> _lines = new();
    /// <summary>Descriptors whose line has not fully arrived yet.</summary>
    private readonly List<int> _fds = [];

    /// <summary>The next line (without its newline) and the descriptors sent with it; null at end
    /// of file. The caller owns the descriptors.</summary>
    public async Task<(string Line, int[] Fds)?> ReadLineAsync(CancellationToken ct)
    {
        var buffer = new byte[4096];
        while (_lines.Count == 0)
        {
            var n = FdPassing.Receive((int)socket.Handle, buffer, _fds, dontWait: true);
            if (n == 0)
            {
                foreach (var fd in _fds) Libc.Close(fd);
                _fds.Clear();
                return null;
            }
            if (n < 0)
            {
                await socket.ReceiveAsync(Memory<byte>.Empty, System.Net.Sockets.SocketFlags.None, ct).ConfigureAwait(false);
                continue;
            }
            _pending.AddRange(buffer.AsSpan(0, n));
            Split();
        }
        return _lines.Dequeue();
    }

    /// <summary>Moves the complete lines to the queue; descriptors received go to the last of them.</summary>
    private void Split()
    {
        var complete = new List<string>();
        int nl;
        while ((nl = _pending.IndexOf((byte)'\n')) >= 0)
        {
            complete.Add(System.Text.Encoding.UTF8.GetString([.. _pending.GetRange(0, nl)]));
            _pending.RemoveRange(0, nl + 1);
        }
        for (var i = 0; i < complete.Count; i++)
        {
            int[] fds = [];
            if (i == complete.Count - 1) { fds = [.. _fds]; _fds.Clear(); }
            _lines.Enqueue((complete[i], fds));
        }
    }
}
