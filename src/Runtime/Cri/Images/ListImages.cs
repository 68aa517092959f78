using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriImageService
{
    /// <summary>All stored images, or the one the filter's image names (by tag, digest or id).</summary>
    public override Task<ListImagesResponse> ListImages(ListImagesRequest request, ServerCallContext context)
    {
        var response = new ListImagesResponse();
        response.Images.AddRange(Filtered(request.Filter));
        return Task.FromResult(response);
    }
}
