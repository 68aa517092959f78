using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using CriRuntime.Errors;
using CriRuntime.Files;

namespace CriRuntime.State;

/// <summary>Records kept in memory and on disk, one directory per record with the record in
/// &lt;dir&gt;/&lt;id&gt;/&lt;file&gt;. A record is written atomically before it becomes visible; it is
/// deleted before its directory, so a crash midway leaves a directory without a record (which
/// the recovery sweep removes), never a record without its files.</summary>
public sealed class RecordStore<T> where T : class
{
    private readonly ConcurrentDictionary<string, T> _items = new(StringComparer.Ordinal);
    private readonly string _file;
    private readonly JsonTypeInfo<T> _json;
    private readonly Func<T, string> _id;
    private readonly string _what;
    private readonly Func<T, T> _share;

    public string Dir { get; }

    /// <param name="upgrade">Brings a record written by an earlier version up to date as it is
    /// loaded (fills fields it did not have yet); the file is rewritten at its next change.</param>
    /// <param name="share">The record as kept in memory, with strings many records hold alike
    /// shared (<see cref="StringPool"/>); what is written is the record as given.</param>
    public RecordStore(string dir, string file, JsonTypeInfo<T> json, Func<T, string> id, string what, Func<T, T>? upgrade = null, Func<T, T>? share = null)
    {
        Dir = dir;
        _file = file;
        _json = json;
        _id = id;
        _what = what;
        _share = share ?? (item => item);
        Directory.CreateDirectory(dir);
        foreach (var sub in Directory.GetDirectories(dir))
        {
            var path = Path.Combine(sub, file);
            if (!File.Exists(path)) continue;
            var item = JsonSerializer.Deserialize(File.ReadAllBytes(path), json);
            if (item is not null) _items[id(item)] = _share(upgrade is null ? item : upgrade(item));
        }
    }

    public string ItemDir(string id) => Path.Combine(Dir, id);

    public IReadOnlyCollection<T> All => [.. _items.Values];

    public T? Find(string id) => _items.GetValueOrDefault(id);

    /// <summary>The record with this id, or the unique one whose id starts with it (as crictl allows).</summary>
    public T Get(string idOrPrefix, string field)
    {
        if (string.IsNullOrEmpty(idOrPrefix)) throw Fail.InvalidArgument($"{field}: required");
        if (_items.TryGetValue(idOrPrefix, out var item)) return item;
        var matches = _items.Values.Where(p => _id(p).StartsWith(idOrPrefix, StringComparison.Ordinal)).Take(2).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw Fail.NotFound($"{_what} {idOrPrefix} not found"),
            _ => throw Fail.InvalidArgument($"{field}: {idOrPrefix} matches more than one {_what}"),
        };
    }

    public T? TryGet(string idOrPrefix, string field)
    {
        try { return Get(idOrPrefix, field); }
        catch (CriException e) when (e.Kind == ErrorKind.NotFound) { return null; }
    }

    /// <param name="durable">false for an update that only a crash of the host could lose and
    /// that a reboot voids anyway (see <see cref="AtomicFile"/>); the rename keeps it atomic.</param>
    /// <returns>The record as kept (see the constructor's share).</returns>
    public T Save(T item, bool durable = true)
    {
        var id = _id(item);
        AtomicFile.Write(Path.Combine(ItemDir(id), _file), JsonSerializer.SerializeToUtf8Bytes(item, _json), durable: durable);
        var kept = _share(item);
        _items[id] = kept;
        return kept;
    }

    /// <summary>Replaces a record by <paramref name="change"/> of the current one (the caller holds
    /// its lock): the new record is written atomically first and becomes visible only once
    /// written, so a failed write leaves the old record on disk and in memory alike. A change
    /// that returns the current record writes nothing.</summary>
    public T Update(string id, Func<T, T> change, bool durable = true)
    {
        var current = _items.GetValueOrDefault(id) ?? throw Fail.NotFound($"{_what} {id} not found");
        var next = change(current);
        if (ReferenceEquals(next, current)) return current; // nothing changed: nothing to write
        if (_id(next) != id) throw new InvalidOperationException($"{_what} {id}: an update cannot change the id");
        return Save(next, durable);
    }

    /// <param name="discard">Removes the record's directory instead of a recursive delete (e.g.
    /// a rename into a trash deleted later); its record file goes with it.</param>
    public void Delete(string id, Action<string>? discard = null)
    {
        _items.TryRemove(id, out _);
        var dir = ItemDir(id);
        if (discard is not null && Directory.Exists(dir))
        {
            discard(dir);
            return;
        }
        File.Delete(Path.Combine(dir, _file));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    /// <summary>Directories with no record: what a crash left half-made.</summary>
    public IEnumerable<string> Orphans() =>
        Directory.GetDirectories(Dir).Where(d => !_items.ContainsKey(Path.GetFileName(d)));

    /// <summary>The locks in use, one per record id while someone holds or waits for it: an
    /// entry goes once its last user leaves, so a node that runs through many pods does not keep
    /// a lock for every record it ever had.</summary>
    private readonly Dictionary<string, RecordLock> _locks = new(StringComparer.Ordinal);

    /// <summary>Ids with a lock held or waited for (tests).</summary>
    internal int LocksInUse { get { lock (_locks) return _locks.Count; } }

    /// <summary>Serialises lifecycle changes of one record.</summary>
    public async Task<IDisposable> LockAsync(string id, CancellationToken ct)
    {
        RecordLock entry;
        lock (_locks)
        {
            if (!_locks.TryGetValue(id, out entry!)) _locks[id] = entry = new RecordLock();
            entry.Users++;
        }
        try
        {
            await entry.Semaphore.WaitAsync(ct).ConfigureAwait(false);
        }
        catch
        {
            Leave(id, entry);
            throw;
        }
        return new Releaser(this, id, entry);
    }

    private void Leave(string id, RecordLock entry)
    {
        lock (_locks)
        {
            if (--entry.Users == 0) _locks.Remove(id);
        }
    }

    private sealed class RecordLock
    {
        public readonly SemaphoreSlim Semaphore = new(1, 1);
        /// <summary>Holders and waiters (under the dictionary's lock).</summary>
        public int Users;
    }

    private sealed class Releaser(RecordStore<T> store, string id, RecordLock entry) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            entry.Semaphore.Release();
            store.Leave(id, entry);
        }
    }
}
