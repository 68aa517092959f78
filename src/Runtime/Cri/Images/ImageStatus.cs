using System.Text;
using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Images;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriImageService
{
    /// <summary>The image, or an empty response when it is not stored (the CRI's "not present").
    /// Verbose adds info["info"]: the record, chain ids and the image config as JSON.</summary>
    public override Task<ImageStatusResponse> ImageStatus(ImageStatusRequest request, ServerCallContext context)
    {
        var image = request.Image?.Image;
        if (string.IsNullOrEmpty(image)) throw Fail.InvalidArgument("ImageStatus: image.image is empty");
        var response = new ImageStatusResponse();
        if (_images.Find(image) is not { } record) return Task.FromResult(response);
        response.Image = ToCri(record);
        if (request.Verbose) response.Info["info"] = VerboseInfo(record);
        return Task.FromResult(response);
    }

    private string VerboseInfo(ImageRecord record)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("id", record.Id);
            w.WriteString("manifestDigest", record.ManifestDigest);
            w.WriteStartArray("indexDigests");
            foreach (var d in record.IndexDigests) w.WriteStringValue(d);
            w.WriteEndArray();
            w.WriteStartArray("layers");
            foreach (var l in record.Layers)
            {
                w.WriteStartObject();
                w.WriteString("digest", l.Digest);
                w.WriteString("mediaType", l.MediaType);
                w.WriteNumber("size", l.Size);
                w.WriteString("diffID", l.DiffId);
                w.WriteString("chainID", l.ChainId);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("size", record.Size);
            w.WriteString("pulled", record.Pulled);
            w.WriteBoolean("pinned", _pinned.IsPinned(record));
            w.WriteBoolean("inUse", _usage.IsInUse(record.Id));
            try
            {
                var config = _content.Read(Digest.Parse(record.Id));
                w.WritePropertyName("imageSpec");
                w.WriteRawValue(config);
            }
            catch (CriException) { } // config blob missing: report what we have
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
