using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Pods;

/// <summary>NamespaceOption pid = TARGET (kubectl debug --target): a container created into the pid
/// namespace of another running container of the same pod, asked from inside with ExecSync.</summary>
[Collection(RegistryCollection.Name)]
public class TargetPidNamespaceTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    private static ContainerConfig Debugger(string image, string target)
    {
        var config = Container("debugger", image, "sleep", "3700");
        config.Linux.SecurityContext.NamespaceOptions = new NamespaceOption { Pid = NamespaceMode.Target, TargetId = target };
        return config;
    }

    private static Task<string> Processes(CriClient c, string id) =>
        c.ExecOkAsync(id, "sh", "-c", "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(tr '\\0' ' ' < $p/cmdline)\"; done");

    [Fact]
    public async Task DebugContainer_SeesTheTargetsProcesses_TheTargetIsPid1_OthersStayApart()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (c, image) = (node.C, node.Busybox);
        var (podId, pod) = await node.RunPodAsync("target-pid");
        var app = await c.StartNewAsync(podId, pod, Container("app", image, "sleep", "3701"));
        var other = await c.StartNewAsync(podId, pod, Container("other", image, "sleep", "3702"));

        var debugger = await c.StartNewAsync(podId, pod, Debugger(image, app));
        var seen = await Processes(c, debugger);
        Assert.Contains("1 sleep 3701", seen);     // the target's init is pid 1 of the shared namespace
        Assert.Contains("sleep 3700", seen);       // and the debugger itself is in it
        Assert.DoesNotContain("sleep 3702", seen); // another container of the pod is not
        Assert.Contains("sleep 3700", await Processes(c, app)); // the target sees the debugger too
        Assert.DoesNotContain("sleep 3700", await Processes(c, other));
        // Same namespace, by inode, as the target's.
        Assert.Equal((await c.ExecOkAsync(app, "readlink", "/proc/self/ns/pid")).Trim(), (await c.ExecOkAsync(debugger, "readlink", "/proc/self/ns/pid")).Trim());
    }

    [Fact]
    public async Task Target_Missing_Unknown_OfAnotherPod_OrNotRunning_IsRefused_NamingTheField()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (c, image) = (node.C, node.Busybox);
        var (podId, pod) = await node.RunPodAsync("target-bad");
        var (otherPodId, otherPod) = await node.RunPodAsync("target-bad-other");
        var elsewhere = await c.StartNewAsync(otherPodId, otherPod, Container("elsewhere", image, "sleep", "3703"));
        var created = await c.CreateAsync(podId, pod, Container("created", image, "sleep", "3704"));

        async Task<RpcException> Refused(string target, string name)
        {
            var config = Debugger(image, target);
            config.Metadata.Name = name;
            return await Assert.ThrowsAsync<RpcException>(() => c.CreateAsync(podId, pod, config));
        }

        var missing = await Refused("", "d1");
        Assert.Equal(StatusCode.InvalidArgument, missing.StatusCode);
        Assert.Contains("namespace_options.target_id", missing.Status.Detail);
        var unknown = await Refused("0123456789abcdef", "d2");
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("target_id", unknown.Status.Detail);
        var foreign = await Refused(elsewhere, "d3");
        Assert.Equal(StatusCode.InvalidArgument, foreign.StatusCode);
        Assert.Contains(otherPodId, foreign.Status.Detail);
        var notRunning = await Refused(created, "d4");
        Assert.Equal(StatusCode.FailedPrecondition, notRunning.StatusCode);
        Assert.Contains("not running", notRunning.Status.Detail);

        // Nothing of the refused containers is left: only the two real ones are listed.
        var listed = await c.Runtime.ListContainersAsync(new ListContainersRequest());
        Assert.Equal(new[] { created, elsewhere }.Order(), listed.Containers.Select(x => x.Id).Order());
    }
}
