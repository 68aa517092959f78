using System.Runtime.InteropServices;
using CriRuntime.Interop;

namespace CriRuntime.Checkpoint;

/// <summary>The checkpoint archive's file, written so that its fsync at the end has little left
/// to do: every <see cref="KickBytes"/> written, the range is handed to the disk (sync_file_range
/// WRITE: start the writeback, do not wait), so the disk writes the archive while the rest of it is
/// still being copied instead of all of it after. The call is made on a thread of its own: it
/// submits the I/O itself and waits for the device's queue when the disk is slower than the copy,
/// and the writer is CRIU's image streamer while the container is frozen (its pages must go into
/// the page cache at memory speed, not at the disk's). Durability is still the final fsync's
/// (<see cref="FileStream.Flush(bool)"/>), after <see cref="StopWriteback"/>.</summary>
/// <param name="startWriteback">sync_file_range(fd, offset, bytes, WRITE) (tests: a fake).</param>
internal sealed class WritebackFileStream(FileStream inner, Func<int, long, long, int>? startWriteback = null) : Stream
{
    private readonly Func<int, long, long, int> _startWriteback = startWriteback ?? ((fd, offset, bytes) => Libc.SyncFileRange(fd, offset, bytes, Libc.SYNC_FILE_RANGE_WRITE));
    public const long KickBytes = 8 << 20;
    private readonly object _gate = new(); // Monitor.Wait/Pulse: not a System.Threading.Lock
    /// <summary>The writer's side: the end of the range last handed over.</summary>
    private long _requested;
    /// <summary>Under <see cref="_gate"/>: where the writeback should reach; the thread's state.</summary>
    private long _target;
    private bool _stopping;
    /// <summary>Under <see cref="_gate"/>: the thread should leave nice 19 (<see cref="Hurry"/>).</summary>
    private bool _hurry;
    private bool _hurried;
    private Thread? _thread;

    public FileStream Inner => inner;
    public override bool CanRead => false;
    public override bool CanSeek => true;
    public override bool CanWrite => true;
    public override long Length => inner.Length;
    public override long Position { get => inner.Position; set => inner.Position = value; }
    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
    public override void SetLength(long value) => inner.SetLength(value);

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        inner.Write(buffer);
        Kick();
    }

    /// <summary>Called after bytes were added to the file other than through Write (a kernel copy).</summary>
    public void Kick()
    {
        var position = inner.Position;
        if (position - _requested < KickBytes) return;
        inner.Flush();
        KickTo(position);
    }

    /// <summary>Has the writeback of what was written up to <paramref name="position"/> started
    /// (bytes the kernel moved into the file at explicit offsets), every <see cref="KickBytes"/>;
    /// returns at once.</summary>
    public void KickTo(long position)
    {
        if (position - _requested < KickBytes) return;
        _requested = position;
        lock (_gate)
        {
            if (_stopping) return;
            _target = position;
            StartOrWake();
        }
    }

    /// <summary>The bytes the container was frozen for are all written (its pages): from now on the
    /// writeback is the call's critical path, not CRIU's, so the thread leaves nice 19 (measured
    /// on a busy node: at nice 19 it hardly ran before the fsync, which then wrote all of the
    /// pages) and covers everything written up to <paramref name="position"/> at once.</summary>
    public void Hurry(long position)
    {
        lock (_gate)
        {
            if (_stopping) return;
            _hurry = true;
            if (position > _target) _target = position;
            StartOrWake();
        }
    }

    /// <summary>Under <see cref="_gate"/>: the writeback thread, started on first use, sees the new target.</summary>
    private void StartOrWake()
    {
        if (_thread is null)
        {
            _thread = new Thread(Writeback) { Name = "checkpoint writeback", IsBackground = true };
            _thread.Start();
        }
        else Monitor.Pulse(_gate);
    }

    private void Writeback()
    {
        // Behind CRIU and the thread moving its pages: while the container is frozen they are
        // what it waits for; this only gets the fsync ahead, which comes after the thaw.
        var tid = (uint)Libc.Gettid();
        _ = Libc.Setpriority(Libc.PRIO_PROCESS, tid, 19);
        var fd = (int)inner.SafeFileHandle.DangerousGetHandle();
        long from = 0;
        while (true)
        {
            long to;
            bool hurry;
            lock (_gate)
            {
                while (_target == from && !_stopping && _hurry == _hurried) Monitor.Wait(_gate);
                if (_stopping) return; // what is left is the fsync's
                to = _target;
                hurry = _hurry;
            }
            if (hurry && !_hurried)
            {
                _hurried = true;
                _ = Libc.Setpriority(Libc.PRIO_PROCESS, tid, 0);
                if (to == from) continue;
            }
            // Advisory: a file system without it (or an error) only loses the overlap; fsync decides.
            _ = _startWriteback(fd, from, to - from);
            from = to;
        }
    }

    /// <summary>Ends the writeback thread (waits for the call it is in): before the fsync, and
    /// before the file is closed.</summary>
    public void StopWriteback()
    {
        Thread? thread;
        lock (_gate)
        {
            _stopping = true;
            Monitor.Pulse(_gate);
            thread = _thread;
        }
        thread?.Join();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) StopWriteback();
        base.Dispose(disposing);
    }
}

/// <summary>A file as a tar entry's data, copied into the archive by the kernel
/// (copy_file_range: no trip through user memory) when the archive is a
/// <see cref="WritebackFileStream"/>; read like any stream otherwise. The entry is the file as
/// long as it was when this opened it: a file that grows meanwhile (a running container's log,
/// the dump.log of a lazy dump's CRIU, which logs on while it serves pages) must not put more
/// bytes into the archive than the tar header, written first, announced: the entries after it
/// would be read from the wrong offset (a lazy migration's target refused such archives).</summary>
internal sealed class KernelCopySource : Stream
{
    private readonly string _path;
    private readonly FileStream _file;
    private readonly long _length;

    public KernelCopySource(string path)
    {
        _path = path;
        _file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
        _length = _file.Length;
    }

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    /// <summary>The file's length when it was opened, whatever it is now.</summary>
    public override long Length => _length;
    public override long Position { get => _file.Position; set => _file.Position = value; }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
    public override int Read(Span<byte> buffer)
    {
        var left = _length - _file.Position;
        return left <= 0 ? 0 : _file.Read(buffer[..(int)Math.Min(buffer.Length, left)]);
    }
    public override long Seek(long offset, SeekOrigin origin) => _file.Seek(offset, origin);
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override unsafe void CopyTo(Stream destination, int bufferSize)
    {
        if (destination is not WritebackFileStream archive)
        {
            base.CopyTo(destination, bufferSize);
            return;
        }
        archive.Flush();
        var inFd = (int)_file.SafeFileHandle.DangerousGetHandle();
        var outFd = (int)archive.Inner.SafeFileHandle.DangerousGetHandle();
        long inOff = _file.Position, outOff = archive.Inner.Position, left = _length - inOff;
        while (left > 0)
        {
            var n = Libc.CopyFileRange(inFd, &inOff, outFd, &outOff, (nuint)Math.Min(left, 1L << 30), 0);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                // EXDEV/EINVAL/ENOSYS/EOPNOTSUPP: no kernel copy between these files; copy the rest by hand.
                if (errno is 18 or 22 or 38 or 95)
                {
                    _file.Position = inOff;
                    archive.Inner.Position = outOff;
                    base.CopyTo(destination, bufferSize);
                    return;
                }
                throw new IOException($"copy_file_range {_path}: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            if (n == 0) break; // the file shrank under us: the tar header's size no longer holds
            left -= n;
            archive.Inner.Position = outOff;
            archive.Kick();
        }
        _file.Position = inOff;
        if (left > 0) throw new IOException($"{_path} shrank while it was archived");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _file.Dispose();
        base.Dispose(disposing);
    }
}
