using CriRuntime.Cgroups;

namespace CriRuntime.Tests.Unit.Cgroups;

/// <summary>A temp directory standing in for cgroupfs: writes go only to files that exist (the
/// kernel creates control files, nobody else can), cgroup.procs appends, a new cgroup gets its
/// parent's control files (cpuset.cpus/mems start empty as on v1), and v2's subtree_control decides
/// which controller files a child gets. Every write is logged in order for assertions.</summary>
public sealed class TempCgroupFs : ICgroupFs, IDisposable
{
    private static readonly string[] StartEmpty = ["cpuset.cpus", "cpuset.mems", "cgroup.procs", "cgroup.subtree_control", "freezer.state"];

    public string Root { get; } = Directory.CreateTempSubdirectory("criruntime-cgfs-").FullName;

    /// <summary>(path relative to <see cref="Root"/>, value), in write order.</summary>
    public List<(string File, string Value)> Writes { get; } = [];

    /// <summary>Creates a file as the kernel would have it.</summary>
    public void Seed(string relative, string content = "")
    {
        var path = System.IO.Path.Combine(Root, relative);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
    }

    public string Abs(string relative) => System.IO.Path.Combine(Root, relative);

    public string Text(string relative) => File.ReadAllText(Abs(relative));

    public IEnumerable<string> WritesTo(string fileName) =>
        Writes.Where(w => System.IO.Path.GetFileName(w.File) == fileName).Select(w => w.Value);

    public void Write(string file, string value)
    {
        if (!File.Exists(file)) throw new CgroupException($"write {value} to {file}: No such file or directory (errno 2)", 2);
        Writes.Add((System.IO.Path.GetRelativePath(Root, file), value));
        var name = System.IO.Path.GetFileName(file);
        if (name == "cgroup.procs")
        {
            File.AppendAllText(file, value + "\n");
        }
        else if (name == "cgroup.subtree_control")
        {
            var available = Tokens(File.ReadAllText(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(file)!, "cgroup.controllers")));
            var enabled = Tokens(File.ReadAllText(file)).ToList();
            foreach (var t in value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (!available.Contains(t[1..])) throw new CgroupException($"write {value} to {file}: No such file or directory (errno 2)", 2);
                if (t[0] == '+' && !enabled.Contains(t[1..])) enabled.Add(t[1..]);
                if (t[0] == '-') enabled.Remove(t[1..]);
            }
            File.WriteAllText(file, string.Join(' ', enabled));
        }
        else
        {
            File.WriteAllText(file, value);
        }
    }

    private static string[] Tokens(string s) => s.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Reads and listings of what does not exist (each an exception on the real cgroupfs).</summary>
    public int MissingLookups { get; private set; }

    public string? Read(string file)
    {
        if (File.Exists(file)) return File.ReadAllText(file);
        MissingLookups++;
        return null;
    }

    public bool Mkdir(string dir)
    {
        if (Directory.Exists(dir)) return false;
        var parent = System.IO.Path.GetDirectoryName(dir)!;
        if (!Directory.Exists(parent)) throw new CgroupException($"mkdir {dir}: No such file or directory (errno 2)", 2);
        Directory.CreateDirectory(dir);
        var subtree = System.IO.Path.Combine(parent, "cgroup.subtree_control");
        string[]? enabled = File.Exists(subtree) ? Tokens(File.ReadAllText(subtree)) : null; // null: v1
        foreach (var f in Directory.EnumerateFiles(parent))
        {
            var name = System.IO.Path.GetFileName(f);
            var prefix = name.Split('.')[0];
            // v2: a child has a controller's files only when the parent hands the controller down.
            if (enabled is not null && prefix != "cgroup" && name != "cpu.stat" && !enabled.Contains(prefix)) continue;
            var content = name == "cgroup.controllers" ? string.Join(' ', enabled ?? [])
                : StartEmpty.Contains(name) ? (name == "freezer.state" ? "THAWED" : "")
                : File.ReadAllText(f);
            File.WriteAllText(System.IO.Path.Combine(dir, name), content);
        }
        return true;
    }

    public bool Rmdir(string dir)
    {
        if (!Directory.Exists(dir)) return false;
        if (Directory.EnumerateDirectories(dir).Any() || (Read(System.IO.Path.Combine(dir, "cgroup.procs")) ?? "").Trim().Length > 0)
            throw new CgroupException($"rmdir {dir}: Device or resource busy (errno 16)", 16);
        Directory.Delete(dir, recursive: true);
        return true;
    }

    public bool Exists(string path) => System.IO.Path.Exists(path);

    public IReadOnlyList<string> ListDirectories(string dir)
    {
        if (Directory.Exists(dir)) return [.. Directory.EnumerateDirectories(dir).Select(d => System.IO.Path.GetFileName(d))];
        MissingLookups++;
        return [];
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
