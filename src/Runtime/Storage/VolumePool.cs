using CriRuntime.Config;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Storage;

/// <summary>Warm volumes, so that a container with a disk quota does not wait for a loop device and
/// an ext4 mount (10-70 ms here) on CreateContainer. For each quota size in use (at most
/// <see cref="MaxSizes"/>, the most recently used), <c>[storage] volume_pool</c> volumes are made
/// ahead by a background worker under <c>ROOT/volumes/pool/</c>: image copied from the template,
/// loop device attached, mounted, upper and work dirs made. Create takes one: the image file is
/// renamed (rename(2), never copied) to the container's path (the loop device follows the file, not the name), its mount is
/// bind-mounted on the container's mount point (the bind keeps the ext4 mount's flags) and the pool's
/// mount detached; then a replacement is made in the background. What is taken is an ordinary
/// volume: release, reattach and accounting work on it as on one made cold.
///
/// The pool belongs to no record: a daemon start removes whatever a previous one left there, a
/// clean stop releases it. A volume whose image cannot be renamed to where the caller wants it
/// (another file system: a container's image inside its pod's volume) is put back and the volume
/// is made cold.</summary>
public sealed partial class VolumePool(FileVolumes inner, CriRuntimeConfig config, IHostKernel kernel, ILogger<VolumePool> log) : IWritableVolumes, IDisposable
{
    public const int MaxSizes = 4;
    private readonly Lock _lock = new();
    /// <summary>Warm volumes per size; the list is in use order (last = most recent).</summary>
    private readonly Dictionary<ulong, Queue<WritableVolume>> _warm = [];
    private readonly List<ulong> _recent = [];
    private readonly System.Collections.Concurrent.BlockingCollection<ulong> _refills = [];
    private Thread? _worker;
    private bool _stopped;

    public string PoolDir => Path.Combine(config.Root, "volumes", "pool");
    private int Target => config.Storage.VolumePool;

    public string Backend => inner.Backend;

    /// <summary>Removes what a previous daemon left in the pool, then starts the worker, warming
    /// the node default size when there is one. Call once, before serving.</summary>
    public void Start()
    {
        Sweep();
        if (Target <= 0) return;
        // A thread of its own at the lowest priority: making volumes ahead must not take the CPU
        // from the requests it is there to speed up.
        _worker = new Thread(RefillLoop) { IsBackground = true, Name = "volume pool" };
        _worker.Start();
        if (config.Storage.RootfsQuota > 0) Want(config.Storage.RootfsQuota);
    }

    public WritableVolume Create(string image, string mountPoint, ulong sizeBytes, WritableVolume? pod = null)
    {
        if (Target <= 0) return inner.Create(image, mountPoint, sizeBytes);
        Want(sizeBytes);
        while (TryTakeWarm(sizeBytes) is { } warm)
        {
            switch (Adopt(warm, image, mountPoint))
            {
                case { } taken:
                    LogTaken(image, warm.Device);
                    return taken;
                case null when File.Exists(warm.Image):
                    // Elsewhere on another file system: this and every other warm one would be.
                    PutBack(warm);
                    return inner.Create(image, mountPoint, sizeBytes);
            }
            // Broken (its mount gone): released by Adopt; try the next.
        }
        return inner.Create(image, mountPoint, sizeBytes);
    }

    /// <summary>Moves a warm volume to the caller's paths: null if the image cannot be renamed there
    /// (put back untouched) or the warm volume is unusable (then released).</summary>
    private WritableVolume? Adopt(WritableVolume warm, string image, string mountPoint)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(image)!);
        try { kernel.Rename(warm.Image, image); }
        catch (KernelException e) when (e.Errno == Errno.EXDEV) { return null; }
        try
        {
            Directory.CreateDirectory(mountPoint);
            kernel.Mount(warm.MountPoint, mountPoint, null, Libc.MS_BIND, null);
        }
        catch (Exception e) when (e is KernelException or IOException)
        {
            LogBroken(warm.MountPoint, e.Message);
            inner.Release(warm with { Image = image });
            RemoveEntry(warm);
            return null;
        }
        // The pool's own mount point goes; the file system stays mounted through the bind.
        inner.Unmount(warm.MountPoint);
        RemoveEntry(warm);
        return new WritableVolume(image, mountPoint, warm.SizeBytes) { Device = warm.Device };
    }

    public WritableVolume? Reattach(WritableVolume volume) => inner.Reattach(volume);
    public void Release(WritableVolume volume) => inner.Release(volume);
    public void Unmount(string mountPoint) => inner.Unmount(mountPoint);
    public FsUsage? Usage(WritableVolume volume) => inner.Usage(volume);

    /// <summary>Warm volumes ready now, by size (Status verbose info).</summary>
    public IReadOnlyDictionary<ulong, int> Warm()
    {
        lock (_lock) return _warm.ToDictionary(kv => kv.Key, kv => kv.Value.Count);
    }

    /// <summary>Notes a size as used (most recent) and asks the worker to top it up; the least
    /// recently used size beyond <see cref="MaxSizes"/> is let go.</summary>
    private void Want(ulong size)
    {
        lock (_lock)
        {
            if (_stopped) return;
            _recent.Remove(size);
            _recent.Add(size);
            _warm.TryAdd(size, new Queue<WritableVolume>());
        }
        try { _refills.Add(size); }
        catch (InvalidOperationException) { } // stopped
    }

    private WritableVolume? TryTakeWarm(ulong size)
    {
        lock (_lock) return _warm.TryGetValue(size, out var q) && q.TryDequeue(out var v) ? v : null;
    }

    private void PutBack(WritableVolume warm)
    {
        lock (_lock)
        {
            if (!_stopped && _warm.TryGetValue(warm.SizeBytes, out var q)) { q.Enqueue(warm); return; }
        }
        ReleaseEntry(warm);
    }

    /// <summary>Makes warm volumes of <paramref name="size"/> until the pool has its target, and
    /// lets go of the sizes no longer among the most recent. Synchronous: the worker's one step,
    /// and what unit tests call.</summary>
    public void Refill(ulong size)
    {
        foreach (var v in Evict()) ReleaseEntry(v);
        while (true)
        {
            lock (_lock)
            {
                if (_stopped || !_recent.Contains(size) || _warm[size].Count >= Target) return;
            }
            var dir = Path.Combine(PoolDir, Guid.NewGuid().ToString("N")[..16]);
            WritableVolume v;
            try { v = inner.Create(Path.Combine(dir, FileVolumes.ImageName), Path.Combine(dir, FileVolumes.MountName), size); }
            catch (Exception e) when (e is KernelException or IOException or Errors.CriException)
            {
                // Not again for this request: the next create of the size asks anew.
                LogRefillFailed(size, e.Message);
                TryDelete(dir);
                return;
            }
            PutBack(v);
        }
    }

    private List<WritableVolume> Evict()
    {
        var gone = new List<WritableVolume>();
        lock (_lock)
        {
            while (_recent.Count > MaxSizes)
            {
                var size = _recent[0];
                _recent.RemoveAt(0);
                if (_warm.Remove(size, out var q)) gone.AddRange(q);
            }
        }
        return gone;
    }

    private void RefillLoop()
    {
        _ = Libc.Setpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid(), 19); // best effort: nice 19
        foreach (var size in _refills.GetConsumingEnumerable())
        {
            try { Refill(size); }
            catch (Exception e) { LogRefillFailed(size, e.Message); } // the worker must outlive any one failure
        }
    }

    /// <summary>Unmounts and deletes everything under the pool directory: nothing there is owned
    /// by a record.</summary>
    public void Sweep()
    {
        if (!Directory.Exists(PoolDir)) return;
        foreach (var dir in Directory.GetDirectories(PoolDir))
        {
            inner.Unmount(Path.Combine(dir, FileVolumes.MountName));
            TryDelete(dir);
            LogSwept(dir);
        }
    }

    /// <summary>Stops the worker and releases every warm volume (a clean daemon stop).</summary>
    public void Dispose()
    {
        lock (_lock) _stopped = true;
        _refills.CompleteAdding();
        // The worker finishes the volume it is making (PutBack then releases it).
        _worker?.Join(TimeSpan.FromSeconds(30));
        List<WritableVolume> all;
        lock (_lock)
        {
            all = [.. _warm.Values.SelectMany(q => q)];
            _warm.Clear();
        }
        foreach (var v in all) ReleaseEntry(v);
    }

    private void ReleaseEntry(WritableVolume v)
    {
        inner.Release(v);
        RemoveEntry(v);
    }

    private static void RemoveEntry(WritableVolume v) => TryDelete(Path.GetDirectoryName(v.MountPoint)!);

    private static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { } // a mount still on it: the next start's sweep
        catch (UnauthorizedAccessException) { }
    }

    [LoggerMessage(EventId = 1410, Level = LogLevel.Debug, Message = "disk quota: warm volume on {Device} taken for {Image}")]
    private partial void LogTaken(string image, string device);

    [LoggerMessage(EventId = 1411, Level = LogLevel.Warning, Message = "disk quota: warm volume {MountPoint} unusable, released: {Reason}")]
    private partial void LogBroken(string mountPoint, string reason);

    [LoggerMessage(EventId = 1412, Level = LogLevel.Warning, Message = "disk quota: could not make a warm volume of {Size} bytes: {Reason}")]
    private partial void LogRefillFailed(ulong size, string reason);

    [LoggerMessage(EventId = 1413, Level = LogLevel.Information, Message = "disk quota: removed {Dir}, left in the volume pool by a previous daemon")]
    private partial void LogSwept(string dir);
}
