using System.Globalization;
using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>The downtime of a pod holding 200 MB, migrated cold and lazy between two real
/// daemons (docs/migration.md, "Lazy mode"): lazy restores without the memory, so its downtime
/// must be shorter; the figures are written to the test output (this machine is shared: noisy).
/// The bench's migration section (docs/benchmarks.md) measures 10 MB to 1 GB, several runs each.</summary>
[Collection(RegistryCollection.Name)]
public class MigrationDowntimeTests(RegistryWithImages fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private string Umoci => _registry.Image("umoci");
    private const int Mb = 200;

    private ContainerConfig Holder(KubePod pod, string imageId)
    {
        // dd holds a 200 MB buffer it filled while it blocks on the pipe to sleep.
        var c = Kubelet.Container(pod, "holder", imageId, Umoci, ["sh", "-c", $"dd if=/dev/zero bs={Mb}M count=1 | sleep 100000"]);
        c.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 0 };
        return c;
    }

    private static string[] WaitResident() =>
        ["sh", "-c", $"until p=$(pidof dd) && [ \"$(awk '/VmRSS/{{print $2}}' /proc/$p/status)\" -ge {Mb * 1000} ]; do sleep 0.05; done"];

    private async Task<long> MigrateOnceAsync(TwoNodes nodes, string mode)
    {
        var (a, b) = (nodes.Source, nodes.Target);
        var imageA = (await a.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = Umoci } })).Image.Id;
        var imageB = (await b.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = Umoci } })).Image.Id;
        var pod = new KubePod { Name = $"holder-{mode}", LogRoot = Path.Combine(a.D.Dir, "kubelet", "logs") };
        var podId = await a.C.RunPodAsync(Kubelet.Sandbox(pod));
        a.Node.Track(podId);
        var id = await a.C.StartNewAsync(podId, Kubelet.Sandbox(pod), Holder(pod, imageA));
        await a.C.ExecOkAsync(id, WaitResident());
        var there = pod with { LogRoot = Path.Combine(b.D.Dir, "kubelet", "logs") };
        var prepared = await b.Migration.PrepareTargetAsync(new PrepareTargetRequest
        {
            MigrationId = $"m-{mode}", Config = Kubelet.Sandbox(there), ContainerConfigs = { Holder(there, imageB) },
        });
        b.Node.Track(prepared.PodSandboxId);

        MigrationStatus? last = null;
        using (var call = a.Migration.Migrate(new MigrateRequest { MigrationId = $"m-{mode}", PodSandboxId = podId, TargetAddress = b.Address, Mode = mode, AllowNewIp = true }))
            await foreach (var s in call.ResponseStream.ReadAllAsync()) last = s;
        Assert.True(last?.Phase == "DONE", $"{last?.Phase}: {last?.Error}");
        var done = last!;
        Assert.Equal("COMMITTED", (await a.Migration.CommitAsync(new CommitRequest { MigrationId = $"m-{mode}" })).Phase);
        // The 200 MB arrived: the buffer is resident in the restored dd.
        var restored = (await b.C.Runtime.ListContainersAsync(new ListContainersRequest { Filter = new ContainerFilter { PodSandboxId = prepared.PodSandboxId } })).Containers.Single();
        await b.C.ExecOkAsync(restored.Id, WaitResident());
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{mode}, {Mb} MB: downtime {done.DowntimeMs} ms (dump {done.DumpMs} ms, transfer {done.TransferMs} ms, restore {done.RestoreMs} ms), {done.BytesSent / 1e6:F1} MB sent"));
        await b.C.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = prepared.PodSandboxId });
        await b.C.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = prepared.PodSandboxId });
        return done.DowntimeMs;
    }

    [Fact]
    public async Task LazyMigrationOfA200MBPod_HasAShorterDowntimeThanCold_AndTheMemoryArrives()
    {
        using var pipes = PipeMaxSize.Set(PipeMaxSize.Lazy);
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);

        var cold = await MigrateOnceAsync(nodes, "cold");
        var lazy = await MigrateOnceAsync(nodes, "lazy");

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"lazy/cold = {(double)lazy / cold:F2}"));
        Assert.True(lazy < cold, $"lazy downtime {lazy} ms, cold {cold} ms");
    }
}
