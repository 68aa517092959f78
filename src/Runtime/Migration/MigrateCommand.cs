using System.Net.Sockets;
using CriRuntime.Migration.V1;
using Grpc.Core;
using Grpc.Net.Client;
using MigrationApi = CriRuntime.Migration.V1.Migration;

namespace CriRuntime.Migration;

/// <summary>`criruntime migrate POD --to ADDRESS --id ID [--mode cold] [--no-commit] [--allow-new-ip]`: Migrate on
/// the source's socket (the target prepared under the same id), progress printed as it comes
/// (phase, bytes), then Commit, and at the end the downtime and the bytes moved.</summary>
public static class MigrateCommand
{
    public sealed record Options(string Socket, string Pod, string To, string Id, string Mode, bool Commit, bool AllowNewIp = false);

    public static async Task<int> RunAsync(Options o, TextWriter output, TextWriter error)
    {
        using var channel = Channel(o.Socket);
        var client = new MigrationApi.MigrationClient(channel);
        MigrationStatus? last = null;
        try
        {
            using var call = client.Migrate(new MigrateRequest { MigrationId = o.Id, PodSandboxId = o.Pod, TargetAddress = o.To, Mode = o.Mode, AllowNewIp = o.AllowNewIp });
            await foreach (var s in call.ResponseStream.ReadAllAsync())
            {
                if (last is null || last.Phase != s.Phase || last.BytesSent != s.BytesSent)
                    output.WriteLine(s.BytesTotal > 0
                        ? $"{s.Phase,-13} {Mib(s.BytesSent)} / {Mib(s.BytesTotal)}"
                        : s.Phase);
                last = s;
            }
            if (last is null || last.Phase != "DONE") throw new RpcException(new Status(StatusCode.Unknown, $"migration ended {last?.Phase ?? "without a status"}"));
            if (o.Commit)
            {
                var committed = await client.CommitAsync(new CommitRequest { MigrationId = o.Id });
                output.WriteLine(committed.Phase);
            }
            output.WriteLine($"migrated pod {last.PodSandboxId} to {o.To} (pod {last.TargetPodSandboxId} there, {(last.KeptIp ? "same IP, connections kept" : "new IP, connections closed")}): downtime {last.DowntimeMs} ms " +
                $"(dump {last.DumpMs} ms, transfer {last.TransferMs} ms, restore {last.RestoreMs} ms), {last.BytesSent} bytes moved" +
                (o.Commit ? "" : $"; the source pod stays frozen until `Commit` or `Abort` of migration {o.Id}"));
            return 0;
        }
        catch (RpcException e)
        {
            error.WriteLine($"criruntime: migrate: {e.StatusCode}: {e.Status.Detail}");
            return 1;
        }
    }

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F1} MiB";

    private static GrpcChannel Channel(string socket) => GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        },
    });
}
