using CriRuntime.Checkpoint;
using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Migration.Peer;

public sealed partial class MigrationPeerService
{
    /// <summary>Receives the pod checkpoint into ROOT/migrations/ID/checkpoint, file by file, each
    /// chunk at the offset where the file ends so far (in order; a retried transfer starts over).
    /// Only "pod.dump" and "containers/NAME.tar" are accepted; Restore then reads the directory as
    /// hostile input (PodArchive, CheckpointSource), as RestorePod does.</summary>
    public override async Task<PeerResponse> Transfer(IAsyncStreamReader<TransferChunk> requestStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct)) throw Fail.InvalidArgument("transfer: no chunk");
        var m = Prepared(requestStream.Current.MigrationId, MigrationPhase.Prepared, MigrationPhase.Receiving, MigrationPhase.Received);
        using (await Store.LockAsync(m.Id, ct))
        {
            m = Store.Update(m.Id, r => r with { Phase = MigrationPhase.Receiving, BytesReceived = 0 });
            Store.DiscardCheckpoint(m.Id);
            var dir = Store.CheckpointDir(m.Id);
            Directory.CreateDirectory(Path.Combine(dir, PodArchive.ContainersDirectory));
            long received = 0;
            FileStream? output = null;
            string? current = null;
            try
            {
                do
                {
                    var chunk = requestStream.Current;
                    if (chunk.File != current)
                    {
                        if (!IsCheckpointFile(chunk.File))
                            throw Fail.InvalidArgument($"file: '{chunk.File}' is not pod.dump or containers/NAME.tar");
                        if (output is not null) await output.DisposeAsync();
                        var path = Path.Combine(dir, chunk.File);
                        if (File.Exists(path)) throw Fail.InvalidArgument($"file: {chunk.File} sent twice");
                        output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0);
                        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                        current = chunk.File;
                    }
                    if (chunk.Offset != output!.Position)
                        throw Fail.InvalidArgument($"file {chunk.File}: chunk at offset {chunk.Offset}, expected {output.Position}");
                    await output.WriteAsync(chunk.Data.Memory, ct);
                    received += chunk.Data.Length;
                }
                while (await requestStream.MoveNext(ct));
            }
            catch
            {
                if (output is not null) await output.DisposeAsync();
                output = null;
                Store.DiscardCheckpoint(m.Id);
                Store.Update(m.Id, r => r with { Phase = MigrationPhase.Prepared, BytesReceived = 0 });
                throw;
            }
            finally
            {
                if (output is not null) await output.DisposeAsync();
            }
            Store.Update(m.Id, r => r with { Phase = MigrationPhase.Received, BytesReceived = received });
            Testing.FaultPoints.Crash(Testing.FaultPoints.TransferAfterReceived);
            return new PeerResponse { PodSandboxId = m.PodId, Bytes = received };
        }
    }

    private static bool IsCheckpointFile(string file)
    {
        if (file == PodArchive.PodDumpFile) return true;
        var prefix = PodArchive.ContainersDirectory + "/";
        return file.StartsWith(prefix, StringComparison.Ordinal) && file.EndsWith(".tar", StringComparison.Ordinal)
            && PodArchive.IsSafeName(file[prefix.Length..^4]);
    }
}
