using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Api;

public sealed partial class MigrationService
{
    /// <summary>Where a migration is, on this node (NotFound if this node has none of that id).</summary>
    public override Task<MigrationStatus> GetMigration(GetMigrationRequest request, ServerCallContext context)
    {
        var m = Get(request.MigrationId);
        return Task.FromResult(ctl.RunningFor(m.Id)?.Latest ?? MigrationController.Status(m));
    }
}
