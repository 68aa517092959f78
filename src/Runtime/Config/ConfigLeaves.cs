using Tomlyn.Model;

namespace CriRuntime.Config;

/// <summary>Every leaf value of the merged configuration, keyed by its path, remembering the file
/// that set it. Binding marks leaves as used; whatever is left over is an unknown key.</summary>
internal sealed class ConfigLeaves
{
    private readonly Dictionary<string, Leaf> _leaves = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    private sealed record Leaf(string[] Path, object Value, string File);

    public void Add(string file, TomlTable table) => Flatten(file, [], table);

    private void Flatten(string file, string[] prefix, TomlTable table)
    {
        foreach (var (key, value) in table)
        {
            string[] path = [.. prefix, key];
            if (value is TomlTable { Count: 0 } empty)
            {
                // An empty table still says something ([runtime.handlers.fast]: accept "fast").
                if (!_leaves.Keys.Any(k => k.StartsWith(Key(path) + "\u0001", StringComparison.Ordinal)))
                    _leaves[Key(path)] = new Leaf(path, empty, file);
            }
            else if (value is TomlTable sub)
            {
                _leaves.Remove(Key(path)); // a table replaces a scalar an earlier file put here
                Flatten(file, path, sub);
            }
            else
            {
                // A later file replaces the leaf and anything a previous file had below it.
                foreach (var k in _leaves.Keys.Where(k => k.StartsWith(Key(path) + "\u0001", StringComparison.Ordinal)).ToList())
                    _leaves.Remove(k);
                _leaves[Key(path)] = new Leaf(path, value, file);
            }
        }
    }

    private static string Key(IEnumerable<string> path) => string.Join('\u0001', path);

    /// <summary>The dotted TOML spelling of a key, quoting segments that need it.</summary>
    public static string Display(IEnumerable<string> path) =>
        string.Join('.', path.Select(s => s.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '_' or '-') && s.Length > 0 ? s : $"\"{s}\""));

    private bool TryGet(string[] path, out Leaf leaf)
    {
        var key = Key(path);
        if (_leaves.TryGetValue(key, out leaf!))
        {
            _used.Add(key);
            return true;
        }
        return false;
    }

    private static ConfigException Bad(Leaf leaf, string reason) =>
        new($"{leaf.File}: key '{Display(leaf.Path)}': {reason}");

    public string String(string[] path, string dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        return leaf.Value as string ?? throw Bad(leaf, $"must be a string, not {Describe(leaf.Value)}");
    }

    public string OneOf(string[] path, string dflt, string[] allowed)
    {
        var v = String(path, dflt);
        if (!allowed.Contains(v))
        {
            TryGet(path, out var leaf);
            throw Bad(leaf, $"'{v}' is not one of {string.Join(", ", allowed)}");
        }
        return v;
    }

    public string AbsolutePath(string[] path, string dflt)
    {
        var v = String(path, dflt);
        if (!System.IO.Path.IsPathRooted(v))
        {
            TryGet(path, out var leaf);
            throw Bad(leaf, $"'{v}' must be an absolute path");
        }
        return v;
    }

    public string AbsolutePathOrEmpty(string[] path, string dflt) =>
        String(path, dflt) is { Length: > 0 } v ? AbsolutePath(path, dflt) : "";

    /// <summary>"IP:PORT" ([::1]:PORT for IPv6) with a port from 1 to 65535, or empty.</summary>
    public string EndpointOrEmpty(string[] path, string dflt)
    {
        var v = String(path, dflt);
        if (v.Length == 0) return v;
        if (!System.Net.IPEndPoint.TryParse(v, out var ep) || ep.Port == 0 || !v.Contains(':'))
        {
            TryGet(path, out var leaf);
            throw Bad(leaf, $"'{v}' must be IP:PORT (e.g. \"127.0.0.1:9464\"), with a port from 1 to 65535");
        }
        return v;
    }

    /// <summary>An absolute http:// or https:// URL, or empty.</summary>
    public string HttpUrlOrEmpty(string[] path, string dflt)
    {
        var v = String(path, dflt);
        if (v.Length == 0) return v;
        if (!Uri.TryCreate(v, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Host.Length == 0)
        {
            TryGet(path, out var leaf);
            throw Bad(leaf, $"'{v}' must be an http:// or https:// URL (e.g. \"http://127.0.0.1:4317\")");
        }
        return v;
    }

    /// <summary>A number from 0 to 1 (a float, or the integers 0 and 1).</summary>
    public double Ratio(string[] path, double dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        var v = leaf.Value switch
        {
            double d => d,
            long l => l,
            _ => throw Bad(leaf, $"must be a number from 0 to 1, not {Describe(leaf.Value)}"),
        };
        if (!(v >= 0 && v <= 1)) throw Bad(leaf, $"{v.ToString(System.Globalization.CultureInfo.InvariantCulture)} is outside 0..1");
        return v;
    }

    public long Integer(string[] path, long dflt, long min, long max)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        if (leaf.Value is not long v) throw Bad(leaf, $"must be an integer, not {Describe(leaf.Value)}");
        if (v < min || v > max) throw Bad(leaf, $"{v} is outside {min}..{max}");
        return v;
    }

    /// <summary>A size in bytes: a string quantity ("512Mi", "1G") or an integer; 0, or at least <paramref name="min"/>.</summary>
    public ulong Size(string[] path, ulong dflt, ulong min)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        ulong bytes;
        if (leaf.Value is long n && n >= 0) bytes = (ulong)n;
        else if (leaf.Value is not string text || !Storage.Quantity.TryParse(text, out bytes))
            throw Bad(leaf, $"must be a size such as \"512Mi\", not {Describe(leaf.Value)}");
        if (bytes != 0 && bytes < min) throw Bad(leaf, $"{bytes} bytes is below the smallest, {min}");
        return bytes;
    }

    public bool Bool(string[] path, bool dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        return leaf.Value as bool? ?? throw Bad(leaf, $"must be true or false, not {Describe(leaf.Value)}");
    }

    /// <summary>An environment as an array of "KEY=VALUE" strings (KEY non-empty, no NUL).</summary>
    public IReadOnlyList<string> Environment(string[] path, IReadOnlyList<string> dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        var list = StringList(leaf);
        foreach (var e in list)
            if (e.IndexOf('=') <= 0 || e.Contains('\0')) throw Bad(leaf, $"'{e}' must be KEY=VALUE");
        return list;
    }

    public TimeSpan PositiveDuration(string[] path, TimeSpan dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        if (leaf.Value is not string s) throw Bad(leaf, $"must be a duration string such as \"30s\" or \"1m\", not {Describe(leaf.Value)}");
        if (!Duration.TryParse(s, out var d)) throw Bad(leaf, $"'{s}' is not a duration (use units ms, s, m, h: \"1m30s\")");
        if (d <= TimeSpan.Zero) throw Bad(leaf, $"'{s}' must be greater than zero");
        return d;
    }

    public IReadOnlyList<string> Strings(string[] path, IReadOnlyList<string> dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        return StringList(leaf);
    }

    private static List<string> StringList(Leaf leaf)
    {
        if (leaf.Value is not TomlArray array) throw Bad(leaf, $"must be an array of strings, not {Describe(leaf.Value)}");
        var list = new List<string>(array.Count);
        foreach (var item in array)
        {
            if (item is not string { Length: > 0 } s) throw Bad(leaf, $"must be an array of non-empty strings; found {Describe(item)}");
            list.Add(s);
        }
        return list;
    }

    public IReadOnlyList<string> AbsolutePaths(string[] path, IReadOnlyList<string> dflt)
    {
        if (!TryGet(path, out var leaf)) return dflt;
        var list = StringList(leaf);
        foreach (var p in list)
            if (!System.IO.Path.IsPathRooted(p)) throw Bad(leaf, $"'{p}' must be an absolute path");
        return list;
    }

    public IReadOnlyList<string> Hosts(string[] path)
    {
        if (!TryGet(path, out var leaf)) return [];
        var list = StringList(leaf);
        foreach (var h in list)
            if (h.Contains('/') || h.Contains(' ')) throw Bad(leaf, $"'{h}' must be a host or host:port, without scheme or path");
        return list;
    }

    /// <summary>[registry.mirrors."host"] tables: every key below the prefix names a host.</summary>
    public IReadOnlyDictionary<string, RegistryMirror> Mirrors(string[] prefix)
    {
        var result = new SortedDictionary<string, RegistryMirror>(StringComparer.Ordinal);
        var depth = prefix.Length;
        foreach (var leaf in _leaves.Values.Where(l => l.Path.Length > depth && l.Path.Take(depth).SequenceEqual(prefix)).ToList())
        {
            if (leaf.Path.Length != depth + 2 || leaf.Path[depth + 1] != "endpoints")
                continue; // left unused: reported as unknown
            var host = leaf.Path[depth];
            TryGet(leaf.Path, out _);
            var endpoints = StringList(leaf);
            foreach (var e in endpoints)
                if (!Uri.TryCreate(e, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https"))
                    throw Bad(leaf, $"'{e}' must be an absolute http:// or https:// URL");
            result[host] = new RegistryMirror(endpoints);
        }
        return result;
    }

    /// <summary>[runtime.handlers.NAME] tables: each NAME (a DNS label, as RuntimeClass handlers
    /// are) with its optional shim_path.</summary>
    public IReadOnlyDictionary<string, RuntimeHandlerConfig> Handlers(string[] prefix)
    {
        var result = new SortedDictionary<string, RuntimeHandlerConfig>(StringComparer.Ordinal);
        var depth = prefix.Length;
        foreach (var leaf in _leaves.Values.Where(l => l.Path.Length > depth && l.Path.Take(depth).SequenceEqual(prefix)).OrderBy(l => l.Path.Length).ToList())
        {
            var name = leaf.Path[depth];
            if (!IsDnsLabel(name)) throw Bad(leaf, $"handler name '{name}' must be a DNS label (lower-case letters, digits, '-'; at most 63)");
            if (name == RuntimeSection.DefaultHandler) throw Bad(leaf, $"'{name}' is the default handler's name and cannot be redefined");
            if (leaf.Path.Length == depth + 1 && leaf.Value is TomlTable)
            {
                TryGet(leaf.Path, out _);
                result.TryAdd(name, new RuntimeHandlerConfig());
            }
            else if (leaf.Path.Length == depth + 2 && leaf.Path[depth + 1] == "shim_path")
            {
                var shim = String(leaf.Path, "");
                if (shim.Length > 0 && !System.IO.Path.IsPathRooted(shim)) throw Bad(leaf, $"'{shim}' must be an absolute path");
                result[name] = (result.GetValueOrDefault(name) ?? new RuntimeHandlerConfig()) with { ShimPath = shim };
            }
            else if (leaf.Path.Length == depth + 2 && leaf.Path[depth + 1] == "proc_view")
            {
                result[name] = (result.GetValueOrDefault(name) ?? new RuntimeHandlerConfig()) with { ProcView = Bool(leaf.Path, false) };
            }
            // anything else is left unused: reported as unknown
        }
        return result;
    }

    private static bool IsDnsLabel(string s) =>
        s.Length is > 0 and <= 63 && s.All(ch => char.IsAsciiLetterLower(ch) || char.IsAsciiDigit(ch) || ch == '-') && s[0] != '-' && s[^1] != '-';

    public void RejectUnknown()
    {
        var unknown = _leaves.Where(kv => !_used.Contains(kv.Key)).Select(kv => kv.Value).OrderBy(l => l.File, StringComparer.Ordinal).FirstOrDefault();
        if (unknown is not null) throw Bad(unknown, "unknown key");
    }

    private static string Describe(object? v) => v switch
    {
        null => "nothing",
        string s => $"the string \"{s}\"",
        long l => $"the integer {l}",
        double d => $"the number {d}",
        bool b => b ? "true" : "false",
        TomlArray => "an array",
        TomlTable => "a table",
        _ => v.GetType().Name,
    };
}
