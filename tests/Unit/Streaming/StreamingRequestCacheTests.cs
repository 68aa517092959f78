using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Streaming;

namespace CriRuntime.Tests.Unit.Streaming;

public class StreamingRequestCacheTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Token_IsSingleUse()
    {
        var cache = new StreamingRequestCache(new ManualClock(T0), TimeSpan.FromMinutes(1));
        var token = cache.Insert(new ExecRequest { ContainerId = "c1" });
        Assert.Equal("c1", cache.Consume<ExecRequest>(token)!.ContainerId);
        Assert.Null(cache.Consume<ExecRequest>(token));
        Assert.Null(cache.Consume<ExecRequest>("never-issued"));
    }

    [Fact]
    public void Token_ExpiresAfterTheTtl()
    {
        var clock = new ManualClock(T0);
        var cache = new StreamingRequestCache(clock, TimeSpan.FromMinutes(1));
        var early = cache.Insert(new PortForwardRequest { PodSandboxId = "p" });
        var late = cache.Insert(new PortForwardRequest { PodSandboxId = "p" });
        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.NotNull(cache.Consume<PortForwardRequest>(early));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(cache.Consume<PortForwardRequest>(late));
    }

    [Fact]
    public void Tokens_AreDistinctAndUrlSafe_AndAWrongKindIsConsumedAsNothing()
    {
        var cache = new StreamingRequestCache(new ManualClock(T0), TimeSpan.FromMinutes(1));
        var tokens = Enumerable.Range(0, 200).Select(_ => cache.Insert(new AttachRequest())).ToHashSet();
        Assert.Equal(200, tokens.Count);
        Assert.All(tokens, t => Assert.Matches("^[A-Za-z0-9_-]{22}$", t));
        var t = tokens.First();
        Assert.Null(cache.Consume<ExecRequest>(t));
        Assert.Null(cache.Consume<AttachRequest>(t));
    }

    [Fact]
    public void AFullCache_DropsExpiredEntries_ThenRefuses()
    {
        var clock = new ManualClock(T0);
        var cache = new StreamingRequestCache(clock, TimeSpan.FromMinutes(1), capacity: 2);
        cache.Insert(new ExecRequest());
        cache.Insert(new ExecRequest());
        var e = Assert.Throws<CriException>(() => cache.Insert(new ExecRequest()));
        Assert.Equal(ErrorKind.ResourceExhausted, e.Kind);
        clock.Advance(TimeSpan.FromMinutes(2));
        cache.Insert(new ExecRequest());
        Assert.Equal(1, cache.Count);
    }

    [Fact]
    public void Token_ExpiresAfterTheTtlGivenWithIt()
    {
        // The daemon sends its configured token_ttl with each registration.
        var clock = new ManualClock(T0);
        var cache = new StreamingRequestCache(clock, TimeSpan.FromMinutes(1));
        var shortLived = cache.Insert(new ExecRequest(), TimeSpan.FromSeconds(5));
        var longLived = cache.Insert(new ExecRequest(), TimeSpan.FromMinutes(5));
        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Null(cache.Consume<ExecRequest>(shortLived));
        clock.Advance(TimeSpan.FromMinutes(3));
        Assert.NotNull(cache.Consume<ExecRequest>(longLived));
    }
}
