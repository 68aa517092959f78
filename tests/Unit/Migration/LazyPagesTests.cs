using CriRuntime.Migration;

namespace CriRuntime.Tests.Unit.Migration;

public class LazyPagesTests
{
    private const string NoCaps = "Name:\tcriruntime\nCapInh:\t0000000000000000\nCapEff:\t0000000000000000\n";
    // Every capability but CAP_SYS_RESOURCE (bit 24), as this machine's root has.
    private const string RootWithoutSysResource = "CapEff:\t000001fffeffffff\n";
    private const string WithSysResource = "CapEff:\t0000000001000000\n";

    [Fact]
    public void Unavailable_SaysWhy_WhenPipeMaxSizeIsTheDefaultOneMiB()
    {
        var why = LazyPages.Unavailable("1048576\n", RootWithoutSysResource);
        Assert.NotNull(why);
        Assert.Contains("fs.pipe-max-size is 1048576", why);
        Assert.Contains("4194304", why);
        Assert.Contains("CAP_SYS_RESOURCE", why);
    }

    [Theory]
    [InlineData("4194304\n")]
    [InlineData("8388608")]
    public void Unavailable_IsNull_WhenPipeMaxSizeIsLargeEnough(string value) =>
        Assert.Null(LazyPages.Unavailable(value, NoCaps));

    [Fact]
    public void Unavailable_IsNull_WithCapSysResource_WhateverThePipeLimit() =>
        Assert.Null(LazyPages.Unavailable("1048576", WithSysResource));

    [Fact]
    public void Unavailable_SaysWhy_WhenPipeMaxSizeIsNotANumber() =>
        Assert.Contains("not a number", LazyPages.Unavailable("junk", NoCaps));
}
