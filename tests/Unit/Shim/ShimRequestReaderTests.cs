using System.Text;
using System.Text.Json;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>ShimRequestReader reads a control request as System.Text.Json (ShimJsonContext)
/// does, or declines it.</summary>
public sealed class ShimRequestReaderTests
{
    private static string Canonical(ShimRequest r) => JsonSerializer.Serialize(r, ShimJsonContext.Default.ShimRequest);

    private static void AssertReadsAsSystemTextJson(byte[] json)
    {
        var ours = ShimRequestReader.TryRead(json);
        Assert.NotNull(ours);
        Assert.Equal(Canonical(JsonSerializer.Deserialize(json, ShimJsonContext.Default.ShimRequest)!), Canonical(ours));
    }

    private static readonly ShimRequest EveryMember = new()
    {
        Op = "update",
        Signal = 15,
        Timeout = 2.5,
        Args = ["sh", "-c", "echo \"x\""],
        Env = ["A=1"],
        Cwd = "/w",
        Tty = true,
        Stdin = false,
        Pid = 42,
        Width = 80,
        Height = 24,
        Resources = SpecReaderTests.EveryMember().Linux!.Resources,
        TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    };

    [Fact]
    public void EveryMember_IsSet_AndReadsAsSystemTextJsonReadsIt()
    {
        // Every member differs from a new request's (a member the reader skipped would show).
        var fresh = new ShimRequest();
        foreach (var p in typeof(ShimRequest).GetProperties().Where(p => p.Name != "EqualityContract"))
            Assert.False(Equals(p.GetValue(EveryMember), p.GetValue(fresh)), p.Name);
        AssertReadsAsSystemTextJson(JsonSerializer.SerializeToUtf8Bytes(EveryMember, ShimJsonContext.Default.ShimRequest));
    }

    [Fact]
    public void TheDaemonsRequests_AndUnknownMembersAndNulls_ReadAsSystemTextJson()
    {
        AssertReadsAsSystemTextJson("""{"op":"start","traceParent":null}"""u8.ToArray());
        AssertReadsAsSystemTextJson("""{"op":"exec","args":["true"],"timeout":10,"later":{"x":[1,2]},"env":null}"""u8.ToArray());
    }

    [Theory]
    [InlineData("""{"op":"stop","signal":"15"}""")]
    [InlineData("""{"op":"resize","width":70000}""")]
    [InlineData("""{"op":"start",}""")]
    [InlineData("""{"op":"start"} // a comment""")]
    [InlineData("""{"op":"start"} {}""")]
    [InlineData("""["start"]""")]
    [InlineData("""null""")]
    [InlineData("""{"op":""")]
    public void WhatItDoesNotTake_IsDeclined(string json) =>
        Assert.Null(ShimRequestReader.TryRead(Encoding.UTF8.GetBytes(json)));
}
