using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Google.Protobuf;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>crictl's own documented example configs (cri-tools docs/crictl.md: `crictl runp
/// pod-config.json`, `crictl create POD container-config.json pod-config.json`), parsed from their
/// JSON as crictl does (proto field names), with the short image name "busybox" that crictl passes
/// through unchanged. crictl itself is not packaged by Debian; this sends what it sends.</summary>
[Collection(RegistryCollection.Name)]
public class CrictlConfigTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private const string PodConfigJson = """
        {
            "metadata": {
                "name": "nginx-sandbox",
                "namespace": "default",
                "attempt": 1,
                "uid": "hdishd83djaidwnduwk28bcsb"
            },
            "log_directory": "/tmp",
            "linux": {
            }
        }
        """;

    private const string ContainerConfigJson = """
        {
          "metadata": {
              "name": "busybox"
          },
          "image":{
              "image": "busybox"
          },
          "command": [
              "top"
          ],
          "log_path":"busybox.0.log",
          "linux": {
          }
        }
        """;

    private static readonly JsonParser Parser = new(JsonParser.Settings.Default);

    [Fact]
    public async Task CrictlExampleConfigs_RunpPullCreateStart_WorkWithAShortImageName()
    {
        // "busybox" is docker.io/library/busybox:latest: served here by a docker.io mirror on the
        // test registry, as a node without Internet access would be configured.
        Shell.Run("skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
            $"docker://{_registry.Image("busybox")}", $"docker://{_registry.Host}/library/busybox:latest");
        using var d = new DaemonProcess();
        File.AppendAllText(d.ConfigFile, $"[registry.mirrors.\"docker.io\"]\nendpoints = [\"http://{_registry.Host}\"]\n");
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();

        var logDir = Path.Combine(d.Dir, "tmp");
        Directory.CreateDirectory(logDir);
        var pod = Parser.Parse<PodSandboxConfig>(PodConfigJson.Replace("\"/tmp\"", $"\"{logDir}\"", StringComparison.Ordinal));
        var container = Parser.Parse<ContainerConfig>(ContainerConfigJson);

        var podId = await c.RunPodAsync(pod);
        try
        {
            // crictl create pulls first (unless --no-pull), with the reference as the user wrote it.
            var pulled = await c.Images.PullImageAsync(new PullImageRequest { Image = container.Image, SandboxConfig = pod });
            Assert.StartsWith("sha256:", pulled.ImageRef);
            var status = await c.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = "busybox" } });
            Assert.Contains("docker.io/library/busybox:latest", status.Image.RepoTags);

            var id = await c.CreateAsync(podId, pod, container);
            await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });
            var cs = await PodHelpers.StatusAsync(c, id);
            Assert.Equal(ContainerState.ContainerRunning, cs.State);
            Assert.Equal(Path.Combine(logDir, "busybox.0.log"), cs.LogPath);
            // No hostname in the config: the node's, as containerd and CRI-O give.
            Assert.Equal(System.Net.Dns.GetHostName(), (await c.ExecOkAsync(id, "hostname")).Trim());
            Assert.Contains("top", await c.ExecOkAsync(id, "ps"));
            var podStatus = await c.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = podId });
            Assert.Equal(PodSandboxState.SandboxReady, podStatus.Status.State);
            Assert.Equal(1u, podStatus.Status.Metadata.Attempt);
        }
        finally
        {
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId });
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
        }
    }
}
