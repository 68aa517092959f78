using CriRuntime.State;

namespace CriRuntime.Tests.Unit.State;

/// <summary>Records keep one copy of the strings many of them hold alike (label and annotation
/// keys, image references), in memory only: what is written is the record as given.</summary>
public sealed class StringPoolTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("criruntime-pool-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>A fresh copy, as a request's bytes or a record file's JSON give every record.</summary>
    private static string Copy(string s) => new(s.AsSpan());

    private static ContainerRecord Container(string id) => new()
    {
        Version = ContainerRecord.CurrentVersion,
        Id = id, PodId = "p", Name = "c", Attempt = 0, CreatedAtNanos = 1, Config = [],
        ImageId = Copy("sha256:" + new string('a', 64)), ImageRef = Copy("registry.example/app@sha256:" + new string('b', 64)),
        LogPath = "/l", BundleDir = "/b", StateDir = "/s", CgroupsPath = "/g",
        Labels = new Dictionary<string, string> { [Copy("io.kubernetes.container.name")] = "app", [Copy("io.kubernetes.pod.uid")] = Copy(id + "-uid") },
        Annotations = new Dictionary<string, string> { [Copy("io.kubernetes.container.hash")] = Copy(id + "-hash") },
    };

    [Fact]
    public void Get_GivesTheFirstCopySeen_AndTheStringItselfOncePastCapacity()
    {
        var pool = new StringPool(capacity: 2);
        var first = Copy("io.kubernetes.pod.name");
        Assert.Same(first, pool.Get(first));
        Assert.Same(first, pool.Get(Copy("io.kubernetes.pod.name")));
        pool.Get(Copy("second"));
        var third = Copy("third");
        Assert.Same(third, pool.Get(third));
        Assert.NotSame(third, pool.Get(Copy("third"))); // not kept: the pool is full
        Assert.Equal(2, pool.Count);
        Assert.Same("", pool.Get(Copy("")));
    }

    [Fact]
    public void Keys_SharesTheKeys_NotTheValues_AndGivesBackAMapWhoseKeysArePooledAlready()
    {
        var pool = new StringPool();
        var a = pool.Keys(new Dictionary<string, string> { [Copy("k")] = Copy("v1") });
        var b = pool.Keys(new Dictionary<string, string> { [Copy("k")] = Copy("v2") });
        Assert.Same(a.Keys.Single(), b.Keys.Single());
        Assert.Equal("v2", b["k"]);
        Assert.Same(b, pool.Keys(b));
        Assert.Same(pool.Keys(new Dictionary<string, string>()), pool.Keys(new Dictionary<string, string>()));
    }

    [Fact]
    public void ContainerStore_KeepsOneCopyOfWhatItsRecordsShare_InMemory_AfterASaveAndAfterALoad()
    {
        var store = new ContainerStore(_root);
        store.Add(Container("c1"));
        store.Add(Container("c2"));
        AssertShared(store.Find("c1")!, store.Find("c2")!);

        var loaded = new ContainerStore(_root);
        AssertShared(loaded.Find("c1")!, loaded.Find("c2")!);
        Assert.Equal("c2-uid", loaded.Find("c2")!.Labels["io.kubernetes.pod.uid"]);
        Assert.Equal("c1-hash", loaded.Find("c1")!.Annotations["io.kubernetes.container.hash"]);

        static void AssertShared(ContainerRecord one, ContainerRecord two)
        {
            Assert.Same(one.ImageId, two.ImageId);
            Assert.Same(one.ImageRef, two.ImageRef);
            Assert.Same(one.Labels.Keys.Order().First(), two.Labels.Keys.Order().First());
            Assert.Same(one.Annotations.Keys.Single(), two.Annotations.Keys.Single());
            Assert.NotSame(one.Labels["io.kubernetes.pod.uid"], two.Labels["io.kubernetes.pod.uid"]);
        }
    }
}
