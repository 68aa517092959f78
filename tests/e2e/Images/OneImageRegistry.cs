using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace CriRuntime.Tests.E2E.Images;

/// <summary>A registry that serves one image, test/stall:latest, with one uncompressed layer.
/// Without <c>layer</c> bytes the layer stalls: the blob's headers and first bytes arrive, then
/// nothing (pull-timeout, cancellation and crash-mid-pull tests). With them it serves that tar
/// (hostile layer tests). Anonymous, plain http on 127.0.0.1.</summary>
public sealed class OneImageRegistry : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly byte[] _manifest, _config;
    private readonly string _manifestDigest, _configDigest, _layerDigest;
    private readonly Task _loop;

    public int Port { get; }
    public string Image => $"127.0.0.1:{Port}/test/stall:latest";
    /// <summary>Completed when the layer download has started (its first bytes were sent).</summary>
    public TaskCompletionSource LayerStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly byte[]? _layer;
    private readonly int LayerSize = 1 << 20;

    public string LayerDigest => _layerDigest;

    public OneImageRegistry(byte[]? layer = null)
    {
        _layer = layer;
        if (layer is not null) LayerSize = layer.Length;
        var layerDigest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(layer ?? new byte[LayerSize]));
        _layerDigest = layerDigest;
        _config = Encoding.UTF8.GetBytes($$$"""{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["{{{layerDigest}}}"]}}""");
        _configDigest = Digest(_config);
        _manifest = Encoding.UTF8.GetBytes($$$"""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{{_configDigest}}}","size":{{{_config.Length}}}},
             "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{{{layerDigest}}}","size":{{{LayerSize}}}}]}
            """);
        _manifestDigest = Digest(_manifest);
        Port = Harness.RegistryFixture.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _loop = Task.Run(LoopAsync);
    }

    private static string Digest(byte[] b) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(b));

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try { ctx = await _listener.GetContextAsync(); }
            catch (Exception) when (_stop.IsCancellationRequested) { return; }
            catch (HttpListenerException) { return; }
            _ = Task.Run(() => ServeAsync(ctx));
        }
    }

    private async Task ServeAsync(HttpListenerContext ctx)
    {
        var path = ctx.Request.Url!.AbsolutePath;
        var response = ctx.Response;
        try
        {
            if (path == "/v2/") { response.StatusCode = 200; response.Close(); return; }
            if (path is "/v2/test/stall/manifests/latest" || path == $"/v2/test/stall/manifests/{_manifestDigest}")
            {
                await SendAsync(response, _manifest, "application/vnd.oci.image.manifest.v1+json");
                return;
            }
            if (path == $"/v2/test/stall/blobs/{_configDigest}") { await SendAsync(response, _config, "application/octet-stream"); return; }
            if (path == $"/v2/test/stall/blobs/{_layerDigest}" && _layer is not null)
            {
                await SendAsync(response, _layer, "application/octet-stream");
                return;
            }
            if (path == $"/v2/test/stall/blobs/{_layerDigest}")
            {
                response.ContentLength64 = LayerSize;
                response.ContentType = "application/octet-stream";
                await response.OutputStream.WriteAsync(new byte[4096]);
                await response.OutputStream.FlushAsync();
                LayerStarted.TrySetResult();
                await Task.Delay(Timeout.Infinite, _stop.Token); // and never another byte
                return;
            }
            response.StatusCode = 404;
            response.Close();
        }
        catch (Exception) { try { response.Abort(); } catch (Exception) { } }
    }

    private static async Task SendAsync(HttpListenerResponse response, byte[] body, string type)
    {
        response.ContentType = type;
        response.ContentLength64 = body.Length;
        await response.OutputStream.WriteAsync(body);
        response.Close();
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _listener.Close();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
