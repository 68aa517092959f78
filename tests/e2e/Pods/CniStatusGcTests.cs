using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>CNI spec 1.1.0's STATUS and GC, through the real daemon and a real (exec'd) plugin of
/// the test's own: a shell script that records every call and answers as a 1.1.0 plugin. Debian's
/// containernetworking-plugins 1.1 speak up to 1.0.0, so they cannot show these verbs.</summary>
public class CniStatusGcTests
{
    private sealed class Recorder
    {
        public required string Log { get; init; }
        public required string DownFlag { get; init; }

        /// <summary>Every call: "COMMAND CONTAINERID STDIN" per line.</summary>
        public string[] Calls() => File.Exists(Log) ? File.ReadAllLines(Log) : [];
    }

    private static Recorder Install(DaemonProcess d, string networkJson)
    {
        var bin = Path.Combine(d.Dir, "cni-bin");
        Directory.CreateDirectory(bin);
        var recorder = new Recorder { Log = Path.Combine(d.Dir, "cni-calls.log"), DownFlag = Path.Combine(d.Dir, "cni-down") };
        var script = Path.Combine(bin, "recorder");
        File.WriteAllText(script, $$"""
            #!/bin/sh
            input=$(cat)
            echo "$CNI_COMMAND ${CNI_CONTAINERID:--} $input" >> {{recorder.Log}}
            case "$CNI_COMMAND" in
              ADD) echo '{"cniVersion":"1.1.0","ips":[{"address":"10.254.0.9/24"}]}' ;;
              STATUS) if [ -e {{recorder.DownFlag}} ]; then
                        echo '{"cniVersion":"1.1.0","code":50,"msg":"recorder backend is down"}'; exit 1
                      fi ;;
              VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
            esac
            exit 0
            """.Replace("\r", ""));
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.WriteAllText(Path.Combine(d.DropInDir, "50-cni-bin.toml"), $"[cni]\nbin_dirs = [\"{bin}\"]\n");
        File.WriteAllText(Path.Combine(d.CniConfDir, "10-recorder.conflist"), networkJson);
        return recorder;
    }

    private static async Task<RuntimeCondition> NetworkReady(CriClient c) =>
        (await c.Runtime.StatusAsync(new StatusRequest())).Status.Conditions.Single(x => x.Type == "NetworkReady");

    [Fact]
    public async Task Status_AsksEveryPluginOfA110Network_AndReportsAPluginThatIsDown()
    {
        using var d = new DaemonProcess();
        var recorder = Install(d, """{"cniVersion":"1.1.0","name":"rec","plugins":[{"type":"recorder","role":"first"},{"type":"recorder","role":"second"}]}""");
        await d.StartAsync();
        using var c = d.Client();

        Assert.True((await NetworkReady(c)).Status);
        var statusCalls = recorder.Calls().Where(l => l.StartsWith("STATUS ", StringComparison.Ordinal)).ToList();
        Assert.Contains(statusCalls, l => l.Contains("\"role\":\"first\"") && l.Contains("\"name\":\"rec\"") && l.Contains("\"cniVersion\":\"1.1.0\""));
        Assert.Contains(statusCalls, l => l.Contains("\"role\":\"second\""));
        Assert.All(statusCalls, l => Assert.StartsWith("STATUS - ", l)); // no container for STATUS

        File.WriteAllText(recorder.DownFlag, "");
        var down = await NetworkReady(c);
        Assert.False(down.Status);
        Assert.Equal("NetworkPluginNotReady", down.Reason);
        Assert.Contains("recorder backend is down", down.Message);
        Assert.Contains("code 50", down.Message);

        File.Delete(recorder.DownFlag);
        Assert.True((await NetworkReady(c)).Status);
    }

    [Fact]
    public async Task Status_OfA100Network_CallsNoStatus_AndCniVersionsPicksTheHighestBothSpeak()
    {
        using var d = new DaemonProcess();
        var recorder = Install(d, """{"cniVersion":"1.0.0","name":"rec","plugins":[{"type":"recorder"}]}""");
        await d.StartAsync();
        using var c = d.Client();
        Assert.True((await NetworkReady(c)).Status);
        Assert.DoesNotContain(recorder.Calls(), l => l.StartsWith("STATUS", StringComparison.Ordinal));

        // cniVersions: 1.1.0 is the highest this runtime speaks of the three, so STATUS is asked.
        File.WriteAllText(Path.Combine(d.CniConfDir, "10-recorder.conflist"),
            """{"cniVersion":"1.0.0","cniVersions":["1.0.0","1.1.0","9.9.9"],"name":"rec","plugins":[{"type":"recorder"}]}""");
        Assert.True((await NetworkReady(c)).Status);
        Assert.Contains(recorder.Calls(), l => l.StartsWith("STATUS - ", StringComparison.Ordinal) && l.Contains("\"cniVersion\":\"1.1.0\""));
    }

    [Fact]
    public async Task Restart_RunsGC_WithThePodsStillThereAsValidAttachments_AndNotTheRemovedOnes()
    {
        using var d = new DaemonProcess();
        var recorder = Install(d, """{"cniVersion":"1.1.0","name":"rec","plugins":[{"type":"recorder"}]}""");
        await d.StartAsync();
        string kept, removed;
        using (var c = d.Client())
        {
            kept = await c.RunPodAsync(PodConfig("gc-kept"));
            removed = await c.RunPodAsync(PodConfig("gc-removed"));
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = removed });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = removed });
        }
        await d.KillAsync();
        File.Delete(recorder.Log);

        await d.StartAsync();
        var gc = Assert.Single(recorder.Calls(), l => l.StartsWith("GC ", StringComparison.Ordinal));
        Assert.StartsWith("GC - ", gc);
        Assert.Contains($$"""{"containerID":"{{kept}}","ifname":"eth0"}""", gc);
        Assert.DoesNotContain(removed, gc);
        Assert.DoesNotContain(recorder.Calls(), l => l.StartsWith("DEL", StringComparison.Ordinal)); // GC is no DEL

        using (var c = d.Client())
        {
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = kept });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = kept });
        }
    }

    [Fact]
    public async Task DisableGC_OrA100Network_GetsNoGC()
    {
        foreach (var network in new[]
        {
            """{"cniVersion":"1.1.0","name":"rec","disableGC":true,"plugins":[{"type":"recorder"}]}""",
            """{"cniVersion":"1.0.0","name":"rec","plugins":[{"type":"recorder"}]}""",
        })
        {
            using var d = new DaemonProcess();
            var recorder = Install(d, network);
            await d.StartAsync();
            await d.StopAsync();
            await d.StartAsync();
            Assert.DoesNotContain(recorder.Calls(), l => l.StartsWith("GC", StringComparison.Ordinal));
        }
    }
}
