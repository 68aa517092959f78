using System.Text;
using CriRuntime.Interop;
using CriRuntime.Shim.Client;

namespace CriRuntime.Checkpoint;

/// <summary>CRIU's image streamer for `criu dump --stream`, writing the images straight into the
/// checkpoint archive instead of into a directory that is then copied: the one write of the
/// pages is the archive's (docs/checkpoint.md, "Performance").
/// The protocol (CRIU's criu/img-streamer.c): CRIU connects to
/// <c>IMAGES_DIR/streamer-capture.sock</c>; for each image it sends a request (a little-endian u32
/// length, then an img_streamer_request_entry protobuf: field 1, the file name), then one byte
/// carrying the read end of a pipe (SCM_RIGHTS), and writes the image into the pipe's other end,
/// closing it at the image's end. Several images are open at once (CRIU keeps files.img, the
/// ids, pipes-data... open while it writes the pages), so each pipe is read as it fills, by one
/// thread polling all of them: an image is kept in memory until it ends, then added whole; the
/// first that outgrows <see cref="MemoryLimit"/> goes into the archive as it arrives (a
/// <see cref="ArchiveWriter.DirectEntry"/>, spliced by the kernel) and the others wait for it in
/// memory, or in a spill file once they outgrow the limit too. CRIU must never wait on a full pipe
/// longer than the archive's page cache takes to accept the bytes: the container is frozen.
/// CRIU moves the pages into a pages image's pipe by reference (splice from the pipe its parasite
/// vmspliced the memory into): until they are copied into the archive they are the process's
/// own pages, which it changes once it runs again. A pages image's pipe is made large
/// (<see cref="PagesPipeSize"/>), so CRIU goes on dumping while this thread copies instead of
/// waiting for it every megabyte, and <see cref="WaitForPages"/> (called at CRIU's post-dump,
/// before the tasks are resumed) waits until every pages image is in the archive.</summary>
internal sealed unsafe class ImageStreamer : IDisposable
{
    public const string SocketName = "streamer-capture.sock";
    public const int MemoryLimit = 1 << 20;
    private const int PipeSize = 1 << 20;
    /// <summary>A pages image's pipe: above fs.pipe-max-size (1 MiB), which binds only a process
    /// without CAP_SYS_RESOURCE (then <see cref="PipeSize"/>). It holds page references, not
    /// copies: its cost is the kernel's array of 4,096 slots.</summary>
    public const int PagesPipeSize = 16 << 20;

    private readonly ArchiveWriter _archive;
    private readonly string _prefix, _spillDir;
    private readonly int _listen, _stopRead, _stopWrite, _wakeRead, _wakeWrite;
    private int _pagesWanted;
    private bool _exited;
    private readonly ManualResetEventSlim _pagesDone = new();
    private readonly Thread _thread;
    private readonly List<string> _written = [];
    private Exception? _error;
    private int _conn = -1;
    private bool _disposed;

    private sealed class Image(string name, int fd)
    {
        public string Name { get; } = name;
        public int Fd { get; set; } = fd;
        public MemoryStream? Buffer { get; set; } = new();
        public FileStream? Spill { get; set; }
        public string? SpillPath { get; set; }
        public ArchiveWriter.DirectEntry? Direct { get; set; }
    }

    /// <summary>Images that ended while another went in directly: added after it, in order.</summary>
    private readonly Queue<Image> _ended = new();
    private readonly List<Image> _open = [];
    private ArchiveWriter.DirectEntry? _direct;

    private ImageStreamer(ArchiveWriter archive, string prefix, string spillDir, int listen, int stopRead, int stopWrite, int wakeRead, int wakeWrite)
    {
        (_archive, _prefix, _spillDir, _listen, _stopRead, _stopWrite) = (archive, prefix, spillDir, listen, stopRead, stopWrite);
        (_wakeRead, _wakeWrite) = (wakeRead, wakeWrite);
        _thread = new Thread(Run) { Name = "criu image streamer", IsBackground = true };
    }

    /// <summary>Listens on <paramref name="imagesDir"/>/<see cref="SocketName"/> (bound through
    /// the directory's descriptor, so the directory's path may be longer than a socket address) and
    /// starts the thread. Images become archive entries named <paramref name="prefix"/>/NAME.</summary>
    public static ImageStreamer Start(string imagesDir, ArchiveWriter archive, string prefix, string spillDir)
    {
        var dir = Libc.Open(imagesDir, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (dir < 0) throw Errno.Exception("open", imagesDir, Errno.Current);
        var listen = Libc.Socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        try
        {
            if (listen < 0) throw Errno.Exception("socket", imagesDir, Errno.Current);
            var path = Encoding.UTF8.GetBytes($"/proc/self/fd/{dir}/{SocketName}");
            var addr = stackalloc byte[110];
            new Span<byte>(addr, 110).Clear();
            *(ushort*)addr = Libc.AF_UNIX;
            path.CopyTo(new Span<byte>(addr + 2, 107));
            if (Libc.Bind(listen, addr, 2 + path.Length + 1) < 0) throw Errno.Exception("bind", Path.Combine(imagesDir, SocketName), Errno.Current);
            if (Libc.Listen(listen, 1) < 0) throw Errno.Exception("listen", Path.Combine(imagesDir, SocketName), Errno.Current);
            var stop = stackalloc int[2];
            if (Libc.Pipe2(stop, Libc.O_CLOEXEC | Libc.O_NONBLOCK) < 0) throw Errno.Exception("pipe2", "image streamer", Errno.Current);
            var wake = stackalloc int[2];
            if (Libc.Pipe2(wake, Libc.O_CLOEXEC | Libc.O_NONBLOCK) < 0)
            {
                var errno = Errno.Current;
                Libc.Close(stop[0]);
                Libc.Close(stop[1]);
                throw Errno.Exception("pipe2", "image streamer", errno);
            }
            var streamer = new ImageStreamer(archive, prefix, spillDir, listen, stop[0], stop[1], wake[0], wake[1]);
            streamer._thread.Start();
            return streamer;
        }
        catch
        {
            if (listen >= 0) Libc.Close(listen);
            throw;
        }
        finally
        {
            Libc.Close(dir);
        }
    }

    /// <summary>The archive names of the images written, in order.</summary>
    public IReadOnlyList<string> Written => _written;

    /// <summary>CRIU's pages image names ("pages-N.img", process memory and shared memory alike).</summary>
    public static bool IsPages(string name) => name.StartsWith("pages-", StringComparison.Ordinal);

    /// <summary>Waits until every pages image CRIU has asked for so far has ended and is in the
    /// archive: called while CRIU waits (its post-dump action), so no request is in flight.
    /// Throws when the stream failed or <paramref name="timeout"/> passed.</summary>
    public void WaitForPages(TimeSpan timeout)
    {
        Volatile.Write(ref _pagesWanted, 1);
        byte one = 1;
        _ = Libc.Write(_wakeWrite, &one, 1);
        if (!_pagesDone.Wait(timeout)) throw new IOException($"criu's pages were not all in the archive {timeout.TotalSeconds:0} s after criu finished the dump");
        if (Volatile.Read(ref _exited) && _error is { } e) throw new IOException($"criu image stream: {e.Message}", e);
    }

    /// <summary>CRIU has exited: waits for the images it wrote to be in the archive and throws
    /// what went wrong on the way. An image still open once CRIU is gone (only a process CRIU
    /// left behind can hold it) fails after <paramref name="grace"/>.</summary>
    public void Finish(TimeSpan grace)
    {
        byte one = 1;
        _ = Libc.Write(_stopWrite, &one, 1);
        if (!_thread.Join(grace)) throw new IOException($"criu image stream did not end within {grace.TotalSeconds:0} s after criu exited");
        if (_error is not null) throw new IOException($"criu image stream: {_error.Message}", _error);
    }

    private void Run()
    {
        try
        {
            // The container is frozen while CRIU waits on a full pipe: this thread moving its pages
            // must not queue behind the node's other work (best effort: nice -10 needs CAP_SYS_NICE).
            _ = Libc.Setpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid(), -10);
            Loop();
        }
        catch (Exception e)
        {
            _error = e;
        }
        finally
        {
            Volatile.Write(ref _exited, true);
            _pagesDone.Set();
            // CRIU writing into a pipe nobody reads gets EPIPE and fails the dump.
            foreach (var image in _open) CloseImage(image);
            _open.Clear();
            if (_conn >= 0) Libc.Close(_conn);
            _conn = -1;
            // An entry left open keeps the archive from being committed (ArchiveWriter.Commit).
        }
    }

    private void Loop()
    {
        var stopped = false;
        var connectionDone = false;
        var fds = new List<Libc.PollFd>();
        while (true)
        {
            if (connectionDone && _open.Count == 0) break;
            if (stopped && _conn < 0 && !connectionDone)
            {
                // CRIU exited: it connected before that, or never will.
                var listen = new Libc.PollFd { Fd = _listen, Events = Libc.POLLIN };
                if (Libc.Poll(&listen, 1, 0) != 1) break;
                Accept();
                continue;
            }
            fds.Clear();
            fds.Add(new Libc.PollFd { Fd = _stopRead, Events = Libc.POLLIN });
            fds.Add(new Libc.PollFd { Fd = _wakeRead, Events = Libc.POLLIN });
            if (_conn < 0 && !connectionDone) fds.Add(new Libc.PollFd { Fd = _listen, Events = Libc.POLLIN });
            if (_conn >= 0) fds.Add(new Libc.PollFd { Fd = _conn, Events = Libc.POLLIN });
            foreach (var image in _open) fds.Add(new Libc.PollFd { Fd = image.Fd, Events = Libc.POLLIN });
            var array = fds.ToArray();
            int ready;
            fixed (Libc.PollFd* p = array) ready = Libc.Poll(p, (nuint)array.Length, stopped ? 5000 : -1);
            if (ready < 0)
            {
                if (Errno.Current == Errno.EINTR) continue;
                throw Errno.Exception("poll", "image streamer", Errno.Current);
            }
            if (ready == 0) throw new IOException($"criu exited and left {string.Join(", ", _open.Select(i => i.Name))} open");
            foreach (var pfd in array)
            {
                if (pfd.Revents == 0) continue;
                if (pfd.Fd == _stopRead) stopped = true;
                else if (pfd.Fd == _wakeRead) ClearWake();
                else if (pfd.Fd == _listen) Accept();
                else if (pfd.Fd == _conn)
                {
                    if (!ReadRequest()) { Libc.Close(_conn); _conn = -1; connectionDone = true; }
                }
                else if (_open.Find(i => i.Fd == pfd.Fd) is { } image) Drain(image);
            }
            if (Volatile.Read(ref _pagesWanted) == 1 && !_pagesDone.IsSet && PagesDrained()) _pagesDone.Set();
        }
    }

    private void ClearWake()
    {
        var buffer = stackalloc byte[16];
        while (Libc.Read(_wakeRead, buffer, 16) > 0) { }
    }

    /// <summary>No pages image open and no request waiting in the connection (one would name an
    /// image whose pipe may hold pages).</summary>
    private bool PagesDrained()
    {
        if (_open.Exists(i => IsPages(i.Name))) return false;
        if (_conn < 0) return true;
        var conn = new Libc.PollFd { Fd = _conn, Events = Libc.POLLIN };
        return Libc.Poll(&conn, 1, 0) == 0;
    }

    private void Accept()
    {
        var fd = Libc.Accept4(_listen, null, null, Libc.SOCK_CLOEXEC);
        if (fd < 0)
        {
            if (Errno.Current is Errno.EINTR or Errno.EAGAIN) return;
            throw Errno.Exception("accept", SocketName, Errno.Current);
        }
        _conn = fd;
    }

    /// <summary>One request and its pipe; false when CRIU closed the connection (no more images).</summary>
    private bool ReadRequest()
    {
        Span<byte> length = stackalloc byte[4];
        if (!ReadExactly(length, allowEnd: true)) return false;
        var size = (int)BitConverter.ToUInt32(length);
        if (size is <= 0 or > 4096) throw new IOException($"image request of {size} bytes");
        var message = new byte[size];
        ReadExactly(message, allowEnd: false);
        var name = RequestName(message);
        var fds = new List<int>(1);
        Span<byte> one = stackalloc byte[1];
        var n = FdPassing.Receive(_conn, one, fds, dontWait: false);
        if (n != 1 || fds.Count != 1)
        {
            foreach (var fd in fds) Libc.Close(fd);
            throw new IOException($"image {name}: no pipe came with the request");
        }
        var pipe = fds[0];
        var flags = Libc.Fcntl(pipe, Libc.F_GETFL, 0);
        if (flags < 0 || Libc.Fcntl(pipe, Libc.F_SETFL, flags | Libc.O_NONBLOCK) < 0)
        {
            Libc.Close(pipe);
            throw Errno.Exception("fcntl", $"image {name}", Errno.Current);
        }
        // Fewer round trips with CRIU for the pages; a limit (fs.pipe-max-size) only costs those.
        if (!IsPages(name) || Libc.Fcntl(pipe, Libc.F_SETPIPE_SZ, PagesPipeSize) < 0) _ = Libc.Fcntl(pipe, Libc.F_SETPIPE_SZ, PipeSize);
        _open.Add(new Image(name, pipe));
        return true;
    }

    /// <summary>The file name of an img_streamer_request_entry (field 1, a string): a single
    /// path component, as CRIU names its images.</summary>
    public static string RequestName(ReadOnlySpan<byte> message)
    {
        var input = new Google.Protobuf.CodedInputStream(message.ToArray());
        string? name = null;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (tag == 10) name = input.ReadString();
            else input.SkipLastField();
        }
        if (string.IsNullOrEmpty(name) || name.Contains('/') || name.Contains('\0') || name is "." or ".." || Encoding.UTF8.GetByteCount(name) > 200)
            throw new IOException($"image request names '{name}', not an image file name");
        return name;
    }

    private bool ReadExactly(Span<byte> buffer, bool allowEnd)
    {
        var got = 0;
        fixed (byte* p = buffer)
        {
            while (got < buffer.Length)
            {
                var n = Libc.Recv(_conn, p + got, buffer.Length - got, 0);
                if (n < 0)
                {
                    if (Errno.Current == Errno.EINTR) continue;
                    throw Errno.Exception("recv", SocketName, Errno.Current);
                }
                if (n == 0)
                {
                    if (got == 0 && allowEnd) return false;
                    throw new IOException("criu closed the image stream in the middle of a request");
                }
                got += (int)n;
            }
        }
        return true;
    }

    /// <summary>Takes what the image's pipe holds now.</summary>
    private void Drain(Image image)
    {
        if (image.Direct is { } direct)
        {
            if (direct.SpliceFrom(image.Fd) == 0) Ended(image);
            return;
        }
        var chunk = new byte[64 << 10];
        while (true)
        {
            nint n;
            fixed (byte* p = chunk) n = Libc.Read(image.Fd, p, chunk.Length);
            if (n < 0)
            {
                if (Errno.Current == Errno.EINTR) continue;
                if (Errno.Current == Errno.EAGAIN) return;
                throw Errno.Exception("read", $"image {image.Name}", Errno.Current);
            }
            if (n == 0)
            {
                Ended(image);
                return;
            }
            if (image.Spill is { } spill) spill.Write(chunk, 0, (int)n);
            else image.Buffer!.Write(chunk, 0, (int)n);
            if (image.Buffer is { Length: > MemoryLimit } buffer)
            {
                if (_direct is null)
                {
                    // This one goes in as it comes: what it has so far, then the kernel moves the rest.
                    image.Direct = _direct = _archive.BeginDirect($"{_prefix}/{image.Name}");
                    image.Direct.Write(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
                    image.Buffer = null;
                    Drain(image);
                    return;
                }
                image.SpillPath = Path.Combine(_spillDir, $"{image.Name}.spill");
                image.Spill = new FileStream(image.SpillPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
                image.Spill.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
                image.Buffer = null;
            }
        }
    }

    private void Ended(Image image)
    {
        _open.Remove(image);
        CloseImage(image);
        if (image.Direct is { } direct)
        {
            direct.End();
            _written.Add(direct.Name);
            _direct = null;
            while (_ended.TryDequeue(out var waiting)) Add(waiting);
        }
        else if (_direct is null) Add(image);
        else _ended.Enqueue(image);
    }

    private void Add(Image image)
    {
        var name = $"{_prefix}/{image.Name}";
        if (image.SpillPath is { } spill)
        {
            _archive.File(spill, name);
            File.Delete(spill);
        }
        else _archive.Bytes(name, new ArraySegment<byte>(image.Buffer!.GetBuffer(), 0, (int)image.Buffer.Length));
        image.Buffer = null;
        _written.Add(name);
    }

    private static void CloseImage(Image image)
    {
        if (image.Fd >= 0) Libc.Close(image.Fd);
        image.Fd = -1;
        image.Spill?.Dispose();
        image.Spill = null;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_thread.IsAlive)
        {
            byte one = 1;
            _ = Libc.Write(_stopWrite, &one, 1);
            // Only reached when the dump failed before Finish: CRIU is gone, so the thread ends.
            _thread.Join(TimeSpan.FromSeconds(10));
        }
        Libc.Close(_listen);
        Libc.Close(_stopRead);
        Libc.Close(_stopWrite);
        Libc.Close(_wakeRead);
        Libc.Close(_wakeWrite);
        _pagesDone.Dispose();
    }
}
