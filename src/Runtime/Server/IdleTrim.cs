using CriRuntime.Interop;
using Microsoft.Extensions.Logging;

namespace CriRuntime.Server;

/// <summary>Gives memory back once a burst of requests is over: when no call that changes
/// something (run, create, start, stop, remove, pull, ...: <see cref="IsRead"/> is false) has been
/// in flight for <see cref="Quiet"/> and the daemon has allocated at least <see cref="Allocated"/>
/// since the last time, <see cref="MemoryTrim.Idle"/> runs (a compacting GC that decommits what
/// it frees, malloc_trim, and the clean code pages start-up and the burst touched; they fault
/// back in from the page cache when used again). What a burst of RunPodSandbox/CreateContainer
/// leaves behind is garbage and warm code the next quiet hours do not need; the kubelet's
/// periodic List calls allocate little, so they do not set it off every second. Also once after
/// start-up. The GC pause (milliseconds for this daemon's heap) falls where nothing waits.</summary>
public sealed partial class IdleTrim : IDisposable
{
    public static readonly TimeSpan Quiet = TimeSpan.FromSeconds(1);
    public const long Allocated = 16 << 20;

    private readonly Timer _timer;
    private readonly Action _trim;
    private readonly Func<long> _allocatedBytes;
    private readonly long _threshold;
    private readonly object _lock = new();
    private int _inFlight;
    private long _allocatedAtLastTrim = long.MinValue / 2;

    /// <summary>The daemon's: each trim says at Debug what it left (the managed heap, what the GC
    /// keeps committed, the process's RSS before and after), so a daemon's settled memory can be
    /// told apart into the GC's part and the rest.</summary>
    public IdleTrim(ILogger<IdleTrim> log) : this(() => TrimLogged(log), () => GC.GetTotalAllocatedBytes()) { }

    private static void TrimLogged(ILogger log)
    {
        if (!log.IsEnabled(LogLevel.Debug))
        {
            MemoryTrim.Idle();
            return;
        }
        var before = RssKb();
        MemoryTrim.Idle();
        var gc = GC.GetGCMemoryInfo(GCKind.Any);
        LogTrimmed(log, before, RssKb(), gc.HeapSizeBytes >> 10, gc.TotalCommittedBytes >> 10, gc.FragmentedBytes >> 10);
    }

    /// <summary>Resident pages from /proc/self/statm (its second field), in KiB; -1 if unreadable.</summary>
    internal static long RssKb()
    {
        try
        {
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) * (Environment.SystemPageSize >> 10);
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            return -1;
        }
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Debug, Message = "Idle trim: RSS {BeforeKb} -> {AfterKb} KiB; managed heap {HeapKb} KiB, committed by the GC {CommittedKb} KiB, of it free {FragmentedKb} KiB")]
    private static partial void LogTrimmed(ILogger log, long beforeKb, long afterKb, long heapKb, long committedKb, long fragmentedKb);

    /// <param name="trim">What a trim does (tests: a counter).</param>
    /// <param name="allocatedBytes">How allocation is counted.</param>
    /// <param name="threshold">How much must have been allocated since the last trim
    /// (<see cref="Allocated"/> for the daemon; the stream server trims after every session).</param>
    public IdleTrim(Action trim, Func<long> allocatedBytes, long threshold = Allocated)
    {
        (_trim, _allocatedBytes, _threshold) = (trim, allocatedBytes, threshold);
        _timer = new Timer(_ => Fire(), null, Timeout.Infinite, Timeout.Infinite);
    }

    public int Trims { get; private set; }

    /// <summary>Calls that only read (the kubelet's periodic relists, Status, stats): they come
    /// every second or so on a live node, so they must not keep the burst from being over.</summary>
    public static bool IsRead(string method)
    {
        var name = method[(method.LastIndexOf('/') + 1)..];
        return name.StartsWith("List", StringComparison.Ordinal) || name.EndsWith("Status", StringComparison.Ordinal)
            || name.EndsWith("Stats", StringComparison.Ordinal) || name is "Version" or "ImageFsInfo" or "RuntimeConfig";
    }

    /// <summary>A call starts: a pending trim waits for the next quiet time.</summary>
    public void Enter()
    {
        lock (_lock)
        {
            _inFlight++;
            _timer.Change(Timeout.Infinite, Timeout.Infinite);
        }
    }

    /// <summary>A call ended: the last one out arms the trim.</summary>
    public void Exit()
    {
        lock (_lock)
        {
            if (--_inFlight == 0) _timer.Change(Quiet, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Runs the trim now if it is due (no call in flight, enough allocated since the last).</summary>
    public void Fire()
    {
        lock (_lock)
        {
            if (_inFlight > 0) return;
            var allocated = _allocatedBytes();
            if (allocated - _allocatedAtLastTrim < _threshold) return;
            // Under the lock: a call that arrives now waits the few milliseconds the trim takes
            // rather than running while the GC compacts.
            _trim();
            _allocatedAtLastTrim = _allocatedBytes();
            Trims++;
        }
    }

    public void Dispose() => _timer.Dispose();
}
