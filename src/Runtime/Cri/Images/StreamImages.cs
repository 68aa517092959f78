using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriImageService
{
    /// <summary>ListImages in batches, so a large store never needs one huge message.</summary>
    public override async Task StreamImages(StreamImagesRequest request, IServerStreamWriter<StreamImagesResponse> responseStream, ServerCallContext context)
    {
        const int Batch = 100;
        foreach (var chunk in Filtered(request.Filter).Chunk(Batch))
        {
            var response = new StreamImagesResponse();
            response.Images.AddRange(chunk);
            await responseStream.WriteAsync(response, context.CancellationToken).ConfigureAwait(false);
        }
    }
}
