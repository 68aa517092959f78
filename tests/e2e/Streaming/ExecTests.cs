using System.Net.WebSockets;
using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Streaming;

/// <summary>kubectl exec without -i/-t, over the WebSocket v5 channel protocol, into a real container.</summary>
[Collection(RegistryCollection.Name)]
public class ExecTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task Exec_OverWebSocketV5_DeliversStdoutStderrAndTheExitStatus()
    {
        using var d = new DaemonProcess();
        using var net = new TestNetwork(d);
        await d.StartAsync();
        using var c = d.Client();
        var image = _registry.Image("busybox");
        await c.PullAsync(image);
        var pod = PodConfig("exec");
        var podId = await c.RunPodAsync(pod);
        var id = await c.StartNewAsync(podId, pod, Container("main", image, "sleep", "3600"));

        var url = (await c.Runtime.ExecAsync(new ExecRequest
        {
            ContainerId = id,
            Cmd = { "sh", "-c", "echo out $(hostname); echo err >&2; exit 3" },
            Stdout = true,
            Stderr = true,
        })).Url;
        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("v5.channel.k8s.io");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await ws.ConnectAsync(new Uri(url.Replace("http://", "ws://")), cts.Token);
        Assert.Equal("v5.channel.k8s.io", ws.SubProtocol);

        var channels = new Dictionary<byte, StringBuilder>();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var frame = new MemoryStream();
            WebSocketReceiveResult r;
            do
            {
                r = await ws.ReceiveAsync(buffer, cts.Token);
                frame.Write(buffer, 0, r.Count);
            }
            while (!r.EndOfMessage);
            if (r.MessageType == WebSocketMessageType.Close) break;
            var bytes = frame.ToArray();
            if (bytes.Length == 0) continue;
            if (!channels.TryGetValue(bytes[0], out var sb)) channels[bytes[0]] = sb = new StringBuilder();
            sb.Append(Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
        }
        Assert.Equal("out exec\n", channels[1].ToString());
        Assert.Equal("err\n", channels[2].ToString());
        var status = channels[3].ToString();
        Assert.Contains("\"reason\":\"NonZeroExitCode\"", status);
        Assert.Contains("\"message\":\"3\"", status);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId });
    }
}
