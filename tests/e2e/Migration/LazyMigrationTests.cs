using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>Lazy (post-copy) migration between two real daemons (docs/migration.md, "Lazy mode").</summary>
public partial class MigrationTests
{
    [Fact]
    public async Task LazyMigration_IsRefusedBeforeTheFreeze_WhenPipeMaxSizeIsTheDefaultOneMiB()
    {
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-lazy-refused");
        await PrepareAsync(b, source, "m-lazy-refused");

        RpcException refused;
        using (PipeMaxSize.Set(PipeMaxSize.Default))
            refused = await Assert.ThrowsAsync<RpcException>(async () => await MigrateAsync(a, "m-lazy-refused", source.PodId, b.Address, "lazy"));

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("fs.pipe-max-size is 1048576", refused.Status.Detail);
        Assert.Contains("4194304", refused.Status.Detail);
        // Nothing happened: no migration recorded, the source never frozen and counting on.
        var none = await Assert.ThrowsAsync<RpcException>(async () => await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-lazy-refused" }));
        Assert.Equal(StatusCode.NotFound, none.StatusCode);
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 2);
        Assert.Equal("PREPARED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-lazy-refused" })).Phase);
        Assert.Equal("ABORTED", (await b.Migration.AbortAsync(new AbortRequest { MigrationId = "m-lazy-refused" })).Phase);
    }
}
