using CriRuntime.Shim.Client;
using CriRuntime.Shim.Kernel;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The sockaddr_un the control socket is bound and connected with, and what a client of
/// a shim that is gone is answered.</summary>
public sealed class UnixSocketAddressTests
{
    [Fact]
    public void Address_IsTheFamilyThenThePathNulTerminated()
    {
        var a = UnixSocketAddress.For("/run/x/control.sock");

        Assert.Equal(2 + "/run/x/control.sock".Length + 1, a.Length);
        Assert.Equal([1, 0, .. "/run/x/control.sock"u8.ToArray(), 0], a.ToArray());
    }

    [Fact]
    public void Address_OfAPathLongerThanSunPath_IsRefusedNamingThePath()
    {
        var path = "/" + new string('a', 107);

        var e = Assert.Throws<ArgumentException>(() => UnixSocketAddress.For(path));
        Assert.Contains(path, e.Message);
        Assert.Equal(2 + 107 + 1, UnixSocketAddress.For(path[..107]).Length);
    }

    [Theory]
    [InlineData(ShimOps.Start, false)]
    [InlineData(ShimOps.Update, false)]
    [InlineData(ShimOps.Stop, true)]
    [InlineData(ShimOps.Kill, true)]
    [InlineData(ShimOps.Wait, true)]
    public void GoneShim_FailsStartAndUpdate_AndAnswersTheRestWithTheFinalState(string op, bool ok)
    {
        var final = new ShimState { Id = "c1", Status = ShimStatus.Stopped, ExitCode = 0 };

        var r = ShimClient.AnswerFromFinalState(new ShimRequest { Op = op }, final);

        Assert.Equal(ok, r.Ok);
        Assert.Equal(final, r.State);
        if (!ok) Assert.Equal("container c1 has exited", r.Error);
    }
}
