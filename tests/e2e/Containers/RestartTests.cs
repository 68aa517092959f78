using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>The daemon is not the containers' parent: they survive its death, and a new daemon
/// finds them, their logs and exits that happened while it was down.</summary>
[Collection(RegistryCollection.Name)]
public class RestartTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task DaemonKill9_ThenRestart_KeepsRunningContainers_StoppableWithTheirLogs()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var logDir = Path.Combine(d.Dir, "logs");
        var pod = PodConfig("survivor", logDir);
        string podId, running, exits;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            running = await c.StartNewAsync(podId, pod, Container("running", image, "sh", "-c", "echo before; exec sleep 3600"));
            // This one exits while the daemon is down: it waits for a file the test creates then.
            exits = await c.StartNewAsync(podId, pod, Container("exits", image, "sh", "-c", "while [ ! -e /tmp/go ]; do usleep 20000; done; exit 3"));
        }
        var exitsStatus = Directory.GetDirectories(Path.Combine(d.State, "c")).Length;
        Assert.Equal(2, exitsStatus);

        await d.KillAsync();
        // While no daemon runs: the second container is told to exit (through its own root fs).
        var upper = Path.Combine(d.Root, "containers", exits, "bundle", "rootfs", "tmp", "go");
        await File.WriteAllTextAsync(upper, "");
        await d.StartAsync();

        using (var c = d.Client())
        {
            var status = await c.StatusAsync(running);
            Assert.Equal(ContainerState.ContainerRunning, status.State);
            var exited = await c.WaitExitedAsync(exits);
            Assert.Equal(3, exited.ExitCode);
            Assert.Equal("before\n", LogText(Path.Combine(logDir, "running.log")));

            await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = running, Timeout = 1 });
            Assert.Equal(ContainerState.ContainerExited, (await c.StatusAsync(running)).State);
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }

    [Fact]
    public async Task ImageRemovedWhileInUse_KeepsItsLayersAcrossRestart_UntilTheContainerGoes()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        var image = _registry.Image("busybox");
        var pod = PodConfig("inuse");
        string podId, id;
        using (var c = d.Client())
        {
            await c.PullAsync(image);
            podId = await c.RunPodAsync(pod);
            id = await c.StartNewAsync(podId, pod, Container("main", image, "sleep", "3600"));
            await c.Images.RemoveImageAsync(new RemoveImageRequest { Image = new ImageSpec { Image = image } });
        }
        var snapshots = Path.Combine(d.Root, "images", "snapshots");
        var layers = Directory.GetDirectories(snapshots);
        Assert.NotEmpty(layers);

        await d.RestartAsync();
        using (var c = d.Client())
        {
            // The restart re-marks the container's image before collecting: its layers stay.
            Assert.All(layers, l => Assert.True(Directory.Exists(l), $"{l} was collected under a running container"));
            Assert.Equal("0", (await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "sh", "-c", "ls /bin/busybox >/dev/null; echo $?" }, Timeout = 10 })).Stdout.ToStringUtf8().Trim());
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
            Assert.Empty((await c.Images.ListImagesAsync(new ListImagesRequest())).Images);
        }
    }
}
