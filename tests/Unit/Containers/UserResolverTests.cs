using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>The groups a container's process gets, by supplemental_groups_policy, from an image
/// whose /etc/group lists user app in group 50000.</summary>
public sealed class UserResolverTests : IDisposable
{
    private readonly string _rootfs = Directory.CreateTempSubdirectory("criruntime-userresolver-").FullName;

    public UserResolverTests()
    {
        Directory.CreateDirectory(Path.Combine(_rootfs, "etc"));
        File.WriteAllText(Path.Combine(_rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n");
        File.WriteAllText(Path.Combine(_rootfs, "etc", "group"), "root:x:0:\napp:x:1000:\nimage-group:x:50000:nobody,app\nother:x:50001:nobody\n");
    }

    public void Dispose() => Directory.Delete(_rootfs, recursive: true);

    [Fact]
    public void Merge_GivesTheGid_TheImagesGroupsForTheUser_AndTheRequestedOnes()
    {
        var user = UserResolver.Resolve(_rootfs, 1000, null, null, [1234, 1234], null, SupplementalGroupsPolicy.Merge);
        Assert.Equal((1000u, 1000u), (user.Uid, user.Gid));
        Assert.Equal([1000u, 50000u, 1234u], user.AdditionalGids);
    }

    [Fact]
    public void Strict_GivesOnlyTheGid_AndTheRequestedOnes()
    {
        var user = UserResolver.Resolve(_rootfs, 1000, null, null, [1234], null, SupplementalGroupsPolicy.Strict);
        Assert.Equal([1000u, 1234u], user.AdditionalGids);
    }

    [Fact]
    public void Merge_OfAUserByName_WithRunAsGroup_KeepsTheUsersImageGroups()
    {
        var user = UserResolver.Resolve(_rootfs, null, "app", 3000, [], null, SupplementalGroupsPolicy.Merge);
        Assert.Equal((1000u, 3000u), (user.Uid, user.Gid));
        Assert.Equal([3000u, 50000u], user.AdditionalGids);
    }

    [Fact]
    public void AUidWithoutPasswdEntry_GetsNoImageGroups()
    {
        var user = UserResolver.Resolve(_rootfs, 4242, null, null, [], null, SupplementalGroupsPolicy.Merge);
        Assert.Equal((4242u, 0u), (user.Uid, user.Gid));
        Assert.Equal([0u], user.AdditionalGids);
    }

    [Fact]
    public void AnUnknownPolicy_IsInvalidArgument_NamingTheField()
    {
        var e = Assert.Throws<CriException>(() => UserResolver.Resolve(_rootfs, 1000, null, null, [], null, (SupplementalGroupsPolicy)7));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("supplemental_groups_policy", e.Message, StringComparison.Ordinal);
    }
}
