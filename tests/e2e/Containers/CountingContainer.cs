using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>The busybox counter that checkpoint and restore tests run: counts in /count (replaced
/// by a rename, so never read half-written) and on stdout five times a second, having written a
/// file to its writable layer and deleted one of the image's.</summary>
internal static class CountingContainer
{
    public static readonly string[] Counter =
        ["sh", "-c", "echo kept > /written.txt; rm /etc/group; i=0; while true; do echo $i > /count.new; mv /count.new /count; echo $i; i=$((i+1)); sleep 0.2; done"];

    /// <summary>Pids of the processes whose command line contains <paramref name="commandLinePart"/>.</summary>
    public static List<int> Processes(string commandLinePart)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try { if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(commandLinePart, StringComparison.Ordinal)) pids.Add(pid); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return pids;
    }

    /// <summary>A node whose daemon restores from checkpoints (`[checkpoint] restore = true`).</summary>
    public static async Task<TestNode> RestoringNodeAsync(RegistryFixture registry)
    {
        var node = await TestNode.StartAsync(registry);
        File.WriteAllText(Path.Combine(node.D.DropInDir, "restore.toml"), "[checkpoint]\nrestore = true\n");
        await node.D.RestartAsync();
        return node;
    }

    public static async Task<int> CountAsync(CriClient c, string id) => int.Parse((await c.ExecOkAsync(id, "cat", "/count")).Trim());

    /// <summary>Waits inside the container (its own sleep, not ours) until the counter reached <paramref name="n"/>.</summary>
    public static Task WaitCountAsync(CriClient c, string id, int n) =>
        c.ExecOkAsync(id, "sh", "-c", $"until [ \"$(cat /count 2>/dev/null)\" -ge {n} ] 2>/dev/null; do sleep 0.05; done");
}
