using System.Text;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Cuts one output stream into CRI log records the way containerd does
/// (internal/cri/io/logger.go): a line ending in "\n" (or "\r\n", both dropped) is a full "F"
/// record; a line longer than <see cref="MaxLine"/> is cut into "P" records of exactly that size
/// followed by the rest; bytes left without a newline at end of stream are a final "P" record.</summary>
public sealed class LogFramer(Action<bool, ReadOnlyMemory<byte>> emit, int maxLine = LogFramer.DefaultMaxLine)
{
    /// <summary>containerd's default max_container_log_line_size.</summary>
    public const int DefaultMaxLine = 16 * 1024;

    public int MaxLine { get; } = maxLine;
    private readonly List<byte> _pending = new();

    public void Feed(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var nl = data.IndexOf((byte)'\n');
            var chunk = nl < 0 ? data : data[..nl];
            foreach (var b in chunk) _pending.Add(b);
            while (_pending.Count > MaxLine) EmitPrefix(MaxLine, partial: true);
            if (nl < 0) return;
            if (_pending.Count > 0 && _pending[^1] == (byte)'\r') _pending.RemoveAt(_pending.Count - 1);
            EmitPrefix(_pending.Count, partial: false);
            data = data[(nl + 1)..];
        }
    }

    /// <summary>The bytes of a line not yet ended, taken out (handed to the monitor with the pipe).</summary>
    public byte[] TakePending()
    {
        var bytes = _pending.ToArray();
        _pending.Clear();
        return bytes;
    }

    /// <summary>Starts with the unended line another writer of this stream had read.</summary>
    public void Prime(ReadOnlySpan<byte> pending)
    {
        foreach (var b in pending) _pending.Add(b);
        while (_pending.Count > MaxLine) EmitPrefix(MaxLine, partial: true);
    }

    /// <summary>End of stream: what is left had no newline, so it is partial.</summary>
    public void Finish()
    {
        if (_pending.Count > 0) EmitPrefix(_pending.Count, partial: true);
    }

    private void EmitPrefix(int count, bool partial)
    {
        var bytes = new byte[count];
        _pending.CopyTo(0, bytes, 0, count);
        _pending.RemoveRange(0, count);
        emit(partial, bytes);
    }
}

/// <summary>The container's log file in the CRI format the kubelet reads:
/// "&lt;RFC3339Nano UTC&gt; stdout|stderr F|P &lt;content&gt;\n", one write(2) per record so the
/// two streams never interleave inside a record. <see cref="Reopen"/> follows the kubelet's
/// rotation (it renames the file, then asks for a reopen).</summary>
public sealed class CriLogWriter : IDisposable
{
    private readonly string _path;
    private readonly Func<DateTime> _clock;
    private readonly Lock _lock = new();
    private FdHandle _fd;

    public CriLogWriter(string path, Func<DateTime>? clock = null)
    {
        _path = path;
        _clock = clock ?? (() => DateTime.UtcNow);
        _fd = OpenLog(path);
    }

    /// <summary>The log already open as <paramref name="fd"/> (inherited from the monitor).</summary>
    public CriLogWriter(string path, FdHandle fd)
    {
        _path = path;
        _clock = () => DateTime.UtcNow;
        _fd = fd;
    }

    /// <summary>The descriptor records are written to (handed to the monitor).</summary>
    public int Fd
    {
        get { lock (_lock) return _fd.Fd; }
    }

    private static FdHandle OpenLog(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return LinuxKernel.Instance.Open(path, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_APPEND, 0x1a0 /* 0640 */);
    }

    /// <summary>Go's time.RFC3339Nano: nanoseconds with trailing zeros (and a bare dot) dropped.
    /// .NET ticks are 100 ns, so at most 7 fractional digits.</summary>
    public static string Timestamp(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", System.Globalization.CultureInfo.InvariantCulture);

    public static byte[] Format(DateTime utc, string stream, bool partial, ReadOnlySpan<byte> content)
    {
        var head = Encoding.ASCII.GetBytes($"{Timestamp(utc)} {stream} {(partial ? 'P' : 'F')} ");
        var line = new byte[head.Length + content.Length + 1];
        head.CopyTo(line, 0);
        content.CopyTo(line.AsSpan(head.Length));
        line[^1] = (byte)'\n';
        return line;
    }

    public void Write(string stream, bool partial, ReadOnlySpan<byte> content)
    {
        lock (_lock)
        {
            var line = Format(_clock(), stream, partial, content);
            Libc.WriteAll(_fd.Fd, line, _path);
        }
    }

    public void Reopen()
    {
        lock (_lock)
        {
            var fresh = OpenLog(_path);
            _fd.Dispose();
            _fd = fresh;
        }
    }

    public void Dispose()
    {
        lock (_lock) _fd.Dispose();
    }
}
