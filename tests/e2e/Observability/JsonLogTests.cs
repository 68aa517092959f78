using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Observability;

/// <summary>log_format = "json": every line the daemon writes is one JSON object with the
/// timestamp, level and message; what a request logs carries the container it names.</summary>
public class JsonLogTests
{
    [Fact]
    public async Task JsonLogFormat_WritesOneObjectPerLine_WithTheRequestsContainerId()
    {
        using var d = new DaemonProcess();
        File.WriteAllText(Path.Combine(d.DropInDir, "50-json.toml"), "log_format = \"json\"\n");
        await d.StartAsync();
        using var c = d.Client();
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await c.Runtime.ContainerStatusAsync(new ContainerStatusRequest { ContainerId = "no-such-container" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        await ReloadTests.WaitForOutputAsync(d, "ContainerStatus failed");
        await d.StopAsync();

        var lines = d.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        var objects = lines.Select(l =>
        {
            try { return JsonDocument.Parse(l).RootElement.Clone(); }
            catch (JsonException ex) { throw new Xunit.Sdk.XunitException($"not one JSON object: {l} ({ex.Message})"); }
        }).ToList();
        foreach (var o in objects)
        {
            Assert.True(DateTimeOffset.TryParse(o.GetProperty("Timestamp").GetString(), out _), o.ToString());
            Assert.False(string.IsNullOrEmpty(o.GetProperty("LogLevel").GetString()));
            Assert.False(string.IsNullOrEmpty(o.GetProperty("Message").GetString()));
        }
        Assert.Contains(objects, o => o.GetProperty("Message").GetString()!.Contains("serving CRI on", StringComparison.Ordinal));
        var failed = Assert.Single(objects, o => o.GetProperty("Message").GetString()!.Contains("ContainerStatus failed", StringComparison.Ordinal));
        // Kestrel's connection and request scopes come with it; ours names the container.
        var scope = Assert.Single(failed.GetProperty("Scopes").EnumerateArray(), s => s.TryGetProperty("container_id", out _));
        Assert.Equal("no-such-container", scope.GetProperty("container_id").GetString());
        Assert.Equal("container_id=no-such-container", scope.GetProperty("Message").GetString());
    }
}
