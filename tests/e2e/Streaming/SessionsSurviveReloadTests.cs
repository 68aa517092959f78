using System.Text;
using System.Text.RegularExpressions;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using CriRuntime.Tests.E2E.Observability;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Streaming;

/// <summary>A config reload (`criruntime reload`: SIGHUP) while an exec session runs: the next
/// pull uses the new mirror, the session carries on.</summary>
public partial class InteractiveTests
{
    [Fact]
    public async Task Reload_WithANewMirror_TheNextPullUsesIt_AndARunningExecSessionSurvives()
    {
        await using var s = await StartAsync("reload-mirror");
        var (c, d) = (s.C, s.D);
        var id = await c.StartNewAsync(s.PodId, s.Pod, Container("main", _registry.Image("busybox"), "sleep", "3600"));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var url = (await c.Runtime.ExecAsync(new ExecRequest
        {
            ContainerId = id, Cmd = { "sh", "-c", "while read l; do echo got-$l; done; exit 3" }, Stdin = true, Stdout = true, Stderr = true,
        })).Url;
        await using var cmd = await SpdyCommand.OpenAsync(url, stdin: true, stdout: true, stderr: true, tty: false, cts.Token);
        var seen = new StringBuilder();
        await cmd.Stdin!.WriteAsync("one\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-one\n"), cts.Token);

        // mirror.invalid never resolves: only a mirror can serve it.
        const string mirrored = "mirror.invalid/test/busybox:latest";
        await Assert.ThrowsAsync<RpcException>(() => c.PullAsync(mirrored));
        File.WriteAllText(Path.Combine(d.DropInDir, "60-mirror.toml"),
            $"[registry.mirrors.\"mirror.invalid\"]\nendpoints = [\"http://{_registry.Host}\"]\n");
        var (code, stdout, stderr) = await DaemonProcess.RunCliAsync("reload", "--config", d.ConfigFile, "--socket", d.Socket, "--state", d.State);
        Assert.True(code == 0, stderr);
        Assert.Contains($"pid {d.Pid}", stdout);
        await ReloadTests.WaitForOutputAsync(d, "config reloaded: registry.mirrors.\"mirror.invalid\".endpoints");

        await c.PullAsync(mirrored);
        var image = (await c.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = mirrored } })).Image;
        Assert.Contains(mirrored, image.RepoTags);

        await cmd.Stdin.WriteAsync("two\n"u8.ToArray(), cts.Token);
        await ReadUntilAsync(cmd.Stdout!, seen, new Regex("got-two\n"), cts.Token);
        await cmd.Stdin.CloseWriteAsync(cts.Token);
        var status = await cmd.StatusAsync(cts.Token);
        Assert.Equal(3, status.ExitCode);
        Assert.Equal("got-one\ngot-two\n", seen.ToString());
    }
}
