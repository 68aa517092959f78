using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriImageService
{
    /// <summary>Pulls and returns the image id (the config digest). The call's cancellation (the
    /// kubelet going away) cancels the pull unless another pull shares its downloads.</summary>
    public override async Task<PullImageResponse> PullImage(PullImageRequest request, ServerCallContext context)
    {
        var image = request.Image?.Image;
        if (string.IsNullOrEmpty(image)) throw Fail.InvalidArgument("PullImage: image.image is empty");
        var record = await _puller.PullAsync(image, request.Auth, context.CancellationToken).ConfigureAwait(false);
        _fsUsage.Invalidate();
        return new PullImageResponse { ImageRef = record.Id };
    }
}
