using System.Formats.Tar;
using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Containers.CountingContainer;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>Restore from an OCI checkpoint image (docs/checkpoint.md, "Restore from a checkpoint
/// image"): the archive CheckpointContainer wrote is made an image by a second tool, Debian's
/// umoci (one layer holding the archive's entries, the checkpoint annotation on the manifest, as
/// `checkpointctl build` makes one with buildah), pushed to the test registry, pulled through the
/// CRI as the kubelet pulls a pod's image, and named by CreateContainer. Needs criu >= 4.2.</summary>
[Collection(RegistryCollection.Name)]
public class CheckpointImageTests(RegistryWithImages fixture)
{
    private const string NameAnnotation = "org.criu.checkpoint.container.name";
    private readonly RegistryFixture _registry = fixture.Registry;

    private static async Task<(string PodId, PodSandboxConfig Sandbox, KubePod Pod)> KubePodAsync(TestNode node, string name)
    {
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await node.C.RunPodAsync(sandbox);
        node.Track(podId);
        return (podId, sandbox, pod);
    }

    private static async Task<string> ImageIdAsync(TestNode node, string image) =>
        (await node.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image } })).Image.Id;

    /// <summary>Builds an OCI layout with umoci from <paramref name="build"/>'s commands (after
    /// `umoci init` and `umoci new`), pushes it as HOST/test/NAME:latest and returns that reference.</summary>
    private string PushUmociImage(string workDir, string name, Action<string> build)
    {
        var layouts = Directory.CreateDirectory(Path.Combine(workDir, "layouts-" + name)).FullName;
        var layout = Path.Combine(layouts, name);
        Shell.Run("umoci", "init", "--layout", layout);
        Shell.Run("umoci", "new", "--image", layout + ":latest");
        build(layout + ":latest");
        Shell.Run(Repo.Hack("images/push-images.sh"), layouts, _registry.Host);
        return $"{_registry.Host}/test/{name}:latest";
    }

    /// <summary>The archive's entries inserted at the image's root, and the annotation set on the manifest.</summary>
    private string PushCheckpointImage(string workDir, string name, string archive, string annotation = NameAnnotation)
    {
        var stage = Directory.CreateDirectory(Path.Combine(workDir, "stage-" + name)).FullName;
        TarFile.ExtractToDirectory(archive, stage, overwriteFiles: false);
        return PushUmociImage(workDir, name, image =>
        {
            Shell.Run("umoci", "insert", "--image", image, stage, "/");
            Shell.Run("umoci", "config", "--image", image, "--manifest.annotation", $"{annotation}=counter",
                "--manifest.annotation", "org.criu.checkpoint.engine.name=criruntime");
        });
    }

    private static async Task<string> PullAsync(TestNode node, string image) =>
        (await node.C.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = image } })).ImageRef;

    [Fact]
    public async Task RestoredFromACheckpointImage_ACounterInANewPod_ContinuesFromTheCheckpointedValue_InTheNewPodsUtsAndIpc()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var busyboxId = await ImageIdAsync(node, node.Busybox);
        var (oldPodId, oldSandbox, oldPod) = await KubePodAsync(node, "image-counter-a");
        var oldId = await node.C.StartNewAsync(oldPodId, oldSandbox, Kubelet.Container(oldPod, "counter", busyboxId, node.Busybox, Counter));
        await WaitCountAsync(node.C, oldId, 10);
        var checkpointed = await CountAsync(node.C, oldId);
        var location = Path.Combine(node.D.Dir, "counter.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = oldId, Location = location, Timeout = 60 });
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = oldId, Timeout = 0 });

        var reference = PushCheckpointImage(node.D.Dir, "ckpt-counter", location);
        var imageId = await PullAsync(node, reference);
        Assert.NotEqual(busyboxId, imageId);

        var (podId, sandbox, pod) = await KubePodAsync(node, "image-counter-b");
        // As the kubelet names a pulled image: its id, with the pod spec's reference beside it.
        var id = await node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "counter", imageId, reference, Counter));
        var created = await node.C.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerCreated, created.State);
        // It runs the stored image the archive recorded (as for an archive path); the request's reference is kept beside it.
        Assert.Equal(busyboxId, created.ImageId);
        Assert.Equal(node.Busybox, created.Image.Image);
        Assert.Equal(reference, created.Image.UserSpecifiedImage);

        await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(id)).State);
        var first = await CountAsync(node.C, id);
        Assert.True(first >= checkpointed, $"restored counter at {first}, checkpointed at {checkpointed}");
        await WaitCountAsync(node.C, id, first + 3);
        Assert.Equal("kept\n", await node.C.ExecOkAsync(id, "cat", "/written.txt"));

        // The new pod's uts and ipc namespaces, as a fresh container of the pod has them (exec
        // joins the restored init's namespaces).
        var fresh = await node.C.StartNewAsync(podId, sandbox, Kubelet.Container(pod, "fresh", busyboxId, node.Busybox, ["sleep", "3600"]));
        const string Probe = "hostname; readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc";
        var restoredSees = await node.C.ExecOkAsync(id, "sh", "-c", Probe);
        var freshSees = await node.C.ExecOkAsync(fresh, "sh", "-c", Probe);
        // Also the pod's own hostname is the new pod's still: CRIU wrote the names the pod has.
        Assert.Equal(sandbox.Hostname, freshSees.Split('\n')[0]);
        Assert.Equal(freshSees, restoredSees);
    }

    [Fact]
    public async Task CheckpointImages_WithAHostileLayer_AreInvalidArgument_AndNothingIsWrittenOutsideTheRoot()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var (podId, sandbox, pod) = await KubePodAsync(node, "image-hostile");
        var busyboxId = await ImageIdAsync(node, node.Busybox);
        var outside = Path.Combine(Path.GetTempPath(), "restore-image-escape-" + Guid.NewGuid().ToString("N"));
        var minimal = MinimalEntries(busyboxId);

        // A symlink out of the archive, inserted by umoci as it finds it on disk.
        var symlinkImage = PushUmociImage(node.D.Dir, "ckpt-symlink", image =>
        {
            var stage = Directory.CreateDirectory(Path.Combine(node.D.Dir, "stage-symlink", "checkpoint")).Parent!.FullName;
            foreach (var (name, content) in minimal) File.WriteAllText(Path.Combine(stage, name), content);
            File.CreateSymbolicLink(Path.Combine(stage, "checkpoint", "pages-1.img"), outside);
            Shell.Run("umoci", "insert", "--image", image, stage, "/");
            Shell.Run("umoci", "config", "--image", image, "--manifest.annotation", $"{NameAnnotation}=counter");
        });
        // An absolute name, in a layer tar umoci adds verbatim.
        var absoluteImage = PushUmociImage(node.D.Dir, "ckpt-absolute", image =>
        {
            var layer = Path.Combine(node.D.Dir, "absolute-layer.tar");
            using (var fs = File.Create(layer))
            using (var tar = new TarWriter(fs, TarEntryFormat.Pax))
                foreach (var (name, content) in minimal.Append((outside, "boom")))
                    tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) });
            Shell.Run("umoci", "raw", "add-layer", "--image", image, layer);
            Shell.Run("umoci", "config", "--image", image, "--manifest.annotation", "io.kubernetes.cri-o.annotations.checkpoint.name=counter");
        });

        foreach (var (reference, expect) in new[] { (symlinkImage, "link"), (absoluteImage, "absolute path") })
        {
            var imageId = await PullAsync(node, reference);
            var e = await Assert.ThrowsAsync<RpcException>(() => node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "c", imageId, reference, ["true"])));
            Assert.True(e.StatusCode == StatusCode.InvalidArgument, $"{reference}: {e.StatusCode}: {e.Status.Detail}");
            Assert.Contains(expect, e.Status.Detail);
        }
        Assert.False(File.Exists(outside) || Directory.Exists(outside), $"{outside} was written");
        Assert.Empty((await node.C.Runtime.ListContainersAsync(new ListContainersRequest())).Containers);
        Assert.Empty(Directory.GetDirectories(Path.Combine(node.D.Root, "containers")));
    }

    [Fact]
    public async Task CreateFromACheckpointImage_WithRestoreOff_IsFailedPrecondition()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, sandbox, pod) = await KubePodAsync(node, "image-restore-off");
        var busyboxId = await ImageIdAsync(node, node.Busybox);
        var reference = PushUmociImage(node.D.Dir, "ckpt-off", image =>
        {
            var stage = Directory.CreateDirectory(Path.Combine(node.D.Dir, "stage-off", "checkpoint")).Parent!.FullName;
            foreach (var (name, content) in MinimalEntries(busyboxId)) File.WriteAllText(Path.Combine(stage, name), content);
            Shell.Run("umoci", "insert", "--image", image, stage, "/");
            Shell.Run("umoci", "config", "--image", image, "--manifest.annotation", $"{NameAnnotation}=counter");
        });
        var imageId = await PullAsync(node, reference);

        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "c", imageId, reference, ["true"])));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("restore = false", e.Status.Detail);
        Assert.Contains(NameAnnotation, e.Status.Detail);
    }

    /// <summary>A minimal archive's entries: config.dump naming the stored busybox, a spec.dump,
    /// an inventory.img.</summary>
    private static IReadOnlyList<(string Name, string Content)> MinimalEntries(string imageId) =>
    [
        ("config.dump", $"{{\"id\":\"x\",\"name\":\"c\",\"rootfsImageRef\":\"{imageId}\",\"rootfsImageName\":\"busybox\"}}"),
        ("spec.dump", "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\"},\"root\":{\"path\":\"rootfs\"}}"),
        ("checkpoint/inventory.img", "not really"),
    ];
}
