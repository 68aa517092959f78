using System.Collections.Concurrent;
using System.Collections.ObjectModel;

namespace CriRuntime.State;

/// <summary>One copy of the strings that many records hold alike. Every pod and container the
/// kubelet makes carries the same dozen or so label and annotation keys
/// (io.kubernetes.pod.name, io.kubernetes.container.hash, kubernetes.io/config.seen, ...), and
/// the containers of a node share a handful of image references and ids; a record built from a
/// request or read from its file holds copies of its own of each, for as long as the pod lives.
/// Values of labels and annotations are not pooled: most are the pod's own (names, uids, hashes),
/// and would only fill the pool. Bounded: past its capacity a new string is kept as given, so a
/// node with endlessly varied keys does not grow it without end.</summary>
public sealed class StringPool(int capacity = StringPool.DefaultCapacity)
{
    public const int DefaultCapacity = 4096;

    /// <summary>The pool the pod and container stores share (their keys overlap).</summary>
    public static StringPool Records { get; } = new();

    private static readonly IReadOnlyDictionary<string, string> Empty = ReadOnlyDictionary<string, string>.Empty;
    private readonly ConcurrentDictionary<string, string> _strings = new(StringComparer.Ordinal);

    public int Count => _strings.Count;

    /// <summary>The pooled copy of <paramref name="s"/>: the first one seen; <paramref name="s"/>
    /// itself when it is new and the pool is full.</summary>
    public string Get(string s)
    {
        if (s.Length == 0) return "";
        if (_strings.TryGetValue(s, out var pooled)) return pooled;
        return _strings.Count >= capacity ? s : _strings.GetOrAdd(s, s);
    }

    /// <summary>The map with pooled keys: the same map when its keys are already the pooled
    /// copies (a record saved again), one empty map for all the empty ones.</summary>
    public IReadOnlyDictionary<string, string> Keys(IReadOnlyDictionary<string, string> map)
    {
        if (map.Count == 0) return Empty;
        var pooled = true;
        foreach (var key in map.Keys)
        {
            if (!ReferenceEquals(Get(key), key))
            {
                pooled = false;
                break;
            }
        }
        if (pooled) return map;
        var shared = new Dictionary<string, string>(map.Count, StringComparer.Ordinal);
        foreach (var (key, value) in map) shared[Get(key)] = value;
        return shared;
    }
}
