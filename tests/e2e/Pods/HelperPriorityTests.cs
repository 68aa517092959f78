using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>The runtime's helpers set pods up at a lower CPU priority than the daemon (nice 5:
/// HelperPriority), and nothing of the container's inherits it. Real CNI plugins (Debian's bridge,
/// and the host-local IPAM the bridge starts) behind wrappers that record the nice value they run
/// at; the container's processes read from /proc on the host and from inside.</summary>
[Collection(RegistryCollection.Name)]
public class HelperPriorityTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>Field 19 of /proc/PID/stat, counted after the command name: a .NET thread's name
    /// (".NET TP Worker") has spaces in it, so the fields are split only after its closing ')'.</summary>
    private static int Nice(string stat) =>
        int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Trim().Split(' ')[16], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task CniPluginsAndTheirIpam_RunAtNice5_TheContainersProcessesExecsAndMonitorAt0()
    {
        string? log = null;
        await using var node = await TestNode.StartAsync(_registry, d =>
        {
            var bin = Path.Combine(d.Dir, "cni-wrappers");
            Directory.CreateDirectory(bin);
            log = Path.Combine(d.Dir, "cni-nice.log");
            foreach (var plugin in new[] { "bridge", "host-local" })
            {
                var wrapper = Path.Combine(bin, plugin);
                File.WriteAllText(wrapper, $"#!/bin/sh\necho \"{plugin} $CNI_COMMAND $(cut -d' ' -f19 /proc/$$/stat)\" >> {log}\nexec /usr/lib/cni/{plugin} \"$@\"\n");
                File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            File.WriteAllText(Path.Combine(d.DropInDir, "50-cni-bin.toml"), $"[cni]\nbin_dirs = [\"{bin}\", \"/usr/lib/cni\"]\n");
        });
        var (podId, pod) = await node.RunPodAsync("nice");
        var lines = File.ReadAllLines(log!);
        Assert.Contains("bridge ADD 5", lines);
        Assert.Contains("host-local ADD 5", lines); // started by the bridge: it inherits the nice value

        var id = await node.C.StartNewAsync(podId, pod, Container("app", node.Busybox, "sleep", "3600"));
        var (shimPid, containerPid) = node.D.ContainerPids(id);
        Assert.Equal(0, Nice(File.ReadAllText($"/proc/{containerPid}/stat")));
        Assert.Equal(0, Nice(File.ReadAllText($"/proc/{shimPid}/stat"))); // the shim, or the monitor it became
        foreach (var task in Directory.EnumerateDirectories($"/proc/{shimPid}/task"))
        {
            // A thread may end between the listing and the read (the .NET shim's threads all end
            // as it execs the monitor): only the ones still there are read.
            string stat;
            try { stat = File.ReadAllText(Path.Combine(task, "stat")); }
            catch (Exception e) when (e is DirectoryNotFoundException or FileNotFoundException) { continue; }
            Assert.Equal(0, Nice(stat));
        }
        Assert.Equal(0, Nice(await node.C.ExecOkAsync(id, "cat", "/proc/self/stat")));
    }
}
