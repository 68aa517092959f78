using CriRuntime.Errors;
using CriRuntime.State;

namespace CriRuntime.Tests.Unit.State;

/// <summary>State changes go through one guarded Transition per store, persisted atomically; a
/// write that fails leaves the record as it was, in memory and on disk.</summary>
public sealed class TransitionTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("criruntime-transition-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static ContainerRecord Container(string id) => new()
    {
        Version = ContainerRecord.CurrentVersion,
        Id = id, PodId = "p", Name = "c", Attempt = 0, CreatedAtNanos = 1, Config = [], ImageId = "sha256:x", ImageRef = "x",
        LogPath = "/l", BundleDir = "/b", StateDir = "/s", CgroupsPath = "/g",
    };

    private static PodSandboxRecord Pod(string id) => new()
    {
        Version = PodSandboxRecord.CurrentVersion,
        Id = id, Name = "p", Namespace = "n", Uid = "u", Attempt = 0, State = PodState.Ready, CreatedAtNanos = 1, Config = [], Dir = "/d", CgroupPath = "/g",
    };

    [Theory]
    [InlineData(ContainerPhase.Created, ContainerPhase.Running)]
    [InlineData(ContainerPhase.Created, ContainerPhase.Exited)]
    [InlineData(ContainerPhase.Running, ContainerPhase.Exited)]
    [InlineData(ContainerPhase.Unknown, ContainerPhase.Exited)]
    public void Container_AllowedTransition_IsPersisted(ContainerPhase from, ContainerPhase to)
    {
        var store = new ContainerStore(_root);
        store.Add(Container("c1") with { State = from });

        var after = store.Transition("c1", to, c => c with { ExitCode = 3 });

        Assert.Equal((to, 3), (after.State, after.ExitCode));
        Assert.Equal(to, new ContainerStore(_root).Find("c1")!.State);
    }

    [Theory]
    [InlineData(ContainerPhase.Running, ContainerPhase.Created)]
    [InlineData(ContainerPhase.Running, ContainerPhase.Running)]
    [InlineData(ContainerPhase.Exited, ContainerPhase.Running)]
    [InlineData(ContainerPhase.Exited, ContainerPhase.Exited)]
    public void Container_TransitionTheStateMachineForbids_IsFailedPrecondition_AndChangesNothing(ContainerPhase from, ContainerPhase to)
    {
        var store = new ContainerStore(_root);
        store.Add(Container("c1") with { State = from });

        var e = Assert.Throws<CriException>(() => store.Transition("c1", to));

        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.Equal(from, store.Find("c1")!.State);
    }

    [Fact]
    public void Container_TransitionWhoseWriteFails_LeavesTheRecordAsItWas()
    {
        var store = new ContainerStore(_root);
        store.Add(Container("c1"));
        // The record's directory replaced by a file: the atomic write cannot make its temp file.
        Directory.Delete(store.ContainerDir("c1"), recursive: true);
        File.WriteAllText(store.ContainerDir("c1"), "");

        Assert.ThrowsAny<IOException>(() => store.Transition("c1", ContainerPhase.Running));

        Assert.Equal(ContainerPhase.Created, store.Find("c1")!.State);
        File.Delete(store.ContainerDir("c1"));
    }

    [Fact]
    public void Container_Update_CannotChangeThePhase()
    {
        var store = new ContainerStore(_root);
        store.Add(Container("c1"));

        Assert.Throws<InvalidOperationException>(() => store.Update("c1", c => c with { State = ContainerPhase.Running }));
        Assert.Equal("/l2", store.Update("c1", c => c with { LogPath = "/l2" }).LogPath);
    }

    [Fact]
    public void Pod_BecomesNotReady_OnceAndForGood()
    {
        var store = new PodSandboxStore(_root);
        store.Add(Pod("p1"));

        Assert.Equal(PodState.NotReady, store.Transition("p1", PodState.NotReady).State);
        Assert.Equal(PodState.NotReady, store.Transition("p1", PodState.NotReady).State);
        Assert.Equal(ErrorKind.FailedPrecondition, Assert.Throws<CriException>(() => store.Transition("p1", PodState.Ready)).Kind);
        Assert.Equal(PodState.NotReady, new PodSandboxStore(_root).Find("p1")!.State);
    }

    [Fact]
    public void Pod_TransitionWhoseWriteFails_LeavesThePodReady()
    {
        var store = new PodSandboxStore(_root);
        store.Add(Pod("p1"));
        Directory.Delete(store.PodDir("p1"), recursive: true);
        File.WriteAllText(store.PodDir("p1"), "");

        Assert.ThrowsAny<IOException>(() => store.Transition("p1", PodState.NotReady));

        Assert.Equal(PodState.Ready, store.Find("p1")!.State);
        File.Delete(store.PodDir("p1"));
    }
}
