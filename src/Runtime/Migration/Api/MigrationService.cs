using CriRuntime.Errors;
using MigrationApi = CriRuntime.Migration.V1.Migration;

namespace CriRuntime.Migration.Api;

/// <summary>The operator's migration API on the CRI socket (cri/migration/v1/migration.proto).
/// Each RPC lives in its own file of this folder; they validate and call the
/// <see cref="MigrationController"/>.</summary>
public sealed partial class MigrationService(MigrationController ctl) : MigrationApi.MigrationBase
{
    private MigrationStore Store => ctl.Store;

    private static string RequireId(string id)
    {
        if (id.Length == 0) throw Fail.InvalidArgument("migration_id: required");
        if (!MigrationStore.IsValidId(id)) throw Fail.InvalidArgument($"migration_id: '{id}' must be 1-128 of A-Z a-z 0-9 . _ -");
        return id;
    }

    private MigrationRecord Get(string id) =>
        Store.Find(RequireId(id)) ?? throw Fail.NotFound($"migration {id} not found");
}
