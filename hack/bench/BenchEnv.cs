using System.Net;
using System.Net.Sockets;

namespace CriRuntime.Bench;

/// <summary>What the benchmark sets up around the runtimes: a private directory, the e2e registry
/// fixture with the test images and a pause image, a dedicated CNI network. Cleanup undoes
/// everything the run made (also after a failure or Ctrl-C), whatever state it is in.</summary>
public sealed class BenchEnv
{
    public const string Bridge = "crbench0";
    /// <summary>Not used by the e2e tests (10.100-249.x.0/24) nor the default network (10.88/16).</summary>
    public const string Subnet = "10.60.0.0/16";

    public string RepoRoot { get; }
    public string Dir { get; }
    public string LogDir { get; }
    public string CniConfDir => Path.Combine(Dir, "cni");
    public string RegistryDir => Path.Combine(Dir, "registry");
    public string TestImagesDir => Path.Combine(RepoRoot, "artifacts", "test-images");
    public string BenchImagesDir => Path.Combine(RepoRoot, "artifacts", "bench-images");
    public int RegistryPort { get; private set; }
    public string RegistryHost => $"127.0.0.1:{RegistryPort}";
    public string Image(string name) => $"{RegistryHost}/test/{name}:latest";
    private readonly DateTime _started = DateTime.UtcNow;
    private bool _registryStarted;

    public BenchEnv(string repoRoot)
    {
        RepoRoot = repoRoot;
        Dir = Directory.CreateTempSubdirectory("crbench-").FullName;
        LogDir = Path.Combine(repoRoot, "artifacts", "bench");
        Directory.CreateDirectory(LogDir);
    }

    private string Hack(string rel) => Path.Combine(RepoRoot, "hack", rel);

    public void Prepare()
    {
        Console.WriteLine("building the test images and the pause image ...");
        Procs.Run(Hack("images/build-images.sh"), TestImagesDir);
        Procs.Run(Hack("bench/build-pause.sh"), BenchImagesDir);
        RegistryPort = FreePort();
        _registryStarted = true;
        Procs.Run(Hack("registry.sh"), "start", RegistryDir, RegistryPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Procs.Run(Hack("images/push-images.sh"), TestImagesDir, RegistryHost);
        Procs.Run(Hack("images/push-images.sh"), BenchImagesDir, RegistryHost);
        Directory.CreateDirectory(CniConfDir);
        File.WriteAllText(Path.Combine(CniConfDir, "10-bench.conflist"), $$$"""
            {"cniVersion":"1.0.0","name":"crbench","plugins":[
              {"type":"bridge","bridge":"{{{Bridge}}}","isGateway":true,"ipMasq":false,"hairpinMode":true,
               "ipam":{"type":"host-local","ranges":[[{"subnet":"{{{Subnet}}}"}]],"dataDir":"{{{Path.Combine(Dir, "cni-leases")}}}","routes":[{"dst":"0.0.0.0/0"}]}},
              {"type":"portmap","capabilities":{"portMappings":true}},
              {"type":"loopback"}
            ]}
            """);
    }

    /// <summary>Layer digests (hex) of an image's manifest in its OCI layout.</summary>
    public IReadOnlyList<string> LayerDigests(string layoutDir)
    {
        var manifest = File.ReadAllText(Path.Combine(layoutDir, "digest")).Trim()["sha256:".Length..];
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(layoutDir, "blobs", "sha256", manifest)));
        return [.. doc.RootElement.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("digest").GetString()!["sha256:".Length..])];
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Everything below Dir and named after it: container processes (by cgroup), shims,
    /// mounts, cgroups, containerd's netns pins, the bridge, the registry. Best effort, never throws.</summary>
    public void CleanUp()
    {
        var name = Path.GetFileName(Dir);
        var cgroupRoots = Directory.Exists("/sys/fs/cgroup")
            ? Directory.EnumerateDirectories("/sys/fs/cgroup").SelectMany(h => Safe(() => Directory.EnumerateDirectories(h, name + "-*").ToList(), [])).ToList()
            : [];
        // 1. Processes: whatever is in our cgroups (containers, pause), then anything started from Dir (shims).
        foreach (var root in cgroupRoots)
            foreach (var procs in Safe(() => Directory.EnumerateFiles(root, "cgroup.procs", SearchOption.AllDirectories).ToList(), []))
                foreach (var line in Safe(() => File.ReadAllLines(procs), []))
                    if (int.TryParse(line, out var pid)) Procs.Signal(pid, 9);
        foreach (var p in Procs.All())
            if (p.Pid != Environment.ProcessId && p.Cmdline.Contains(Dir, StringComparison.Ordinal)) Procs.Signal(p.Pid, 9);
        // 2. Mounts below Dir, deepest first (rootfs overlays, netns and shm pins).
        var mounts = File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
            .Where(m => m.StartsWith(Dir + "/", StringComparison.Ordinal)).Distinct().OrderByDescending(m => m.Length).ToList();
        foreach (var m in mounts) Procs.TryRun("umount", "-l", m);
        // 3. containerd 1.6 pins pod netns under /var/run/netns/cni-*; only ones made during this run.
        if (Directory.Exists("/var/run/netns"))
            foreach (var ns in Directory.GetFiles("/var/run/netns", "cni-*"))
                if (File.GetCreationTimeUtc(ns) >= _started.AddSeconds(-1) || File.GetLastWriteTimeUtc(ns) >= _started.AddSeconds(-1))
                {
                    Procs.TryRun("umount", "-l", ns);
                    Safe(() => { File.Delete(ns); return 0; }, 0);
                }
        // 4. Cgroups, deepest first (they are empty once their processes are gone).
        foreach (var root in cgroupRoots)
            foreach (var cg in Safe(() => Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories).Append(root).OrderByDescending(p => p.Length).ToList(), []))
                for (var i = 0; i < 20 && Directory.Exists(cg); i++)
                    try { Directory.Delete(cg); }
                    catch (IOException) { Thread.Sleep(50); } // an exiting process still leaves it populated for a moment
        // 5. The bridge (the plugin leaves it by design; its veths went with the netns).
        Procs.TryRun("ip", "link", "del", Bridge);
        if (_registryStarted) Safe(() => Procs.Run(Hack("registry.sh"), "stop", RegistryDir), "");
        Safe(() => { Directory.Delete(Dir, recursive: true); return 0; }, 0);
    }

    private static T Safe<T>(Func<T> f, T fallback)
    {
        try { return f(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or TimeoutException)
        {
            Console.Error.WriteLine($"cleanup: {e.Message}");
            return fallback;
        }
    }
}
