using CriRuntime.Shim.Client;
using CriRuntime.Shim.Supervisor;
using CriRuntime.Files;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The supervisor's runtime settings stay its own, and its state files read sensibly
/// whatever a crash left.</summary>
public sealed class SupervisorStateTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("shim-state");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void ChildEnvironment_LeavesOutTheSupervisorsTuning_AndKeepsTheRest()
    {
        Environment.SetEnvironmentVariable("MALLOC_ARENA_MAX", "1");
        Environment.SetEnvironmentVariable("CRIRUNTIME_TEST_KEPT", "yes");
        try
        {
            var env = Spawn.CurrentEnvironment();
            Assert.Contains("CRIRUNTIME_TEST_KEPT=yes", env);
            Assert.DoesNotContain(env, e => e.StartsWith("MALLOC_ARENA_MAX=", StringComparison.Ordinal));
            Assert.All(SupervisorTuning.Environment, t => Assert.True(SupervisorTuning.Sets(t), t));
            Assert.False(SupervisorTuning.Sets("DOTNET_GCGen0MaxBudgetX=1"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("MALLOC_ARENA_MAX", null);
            Environment.SetEnvironmentVariable("CRIRUNTIME_TEST_KEPT", null);
        }
    }

    [Fact]
    public void NonDurableWrite_ReplacesTheFile_AndLeavesNoTemporaryBehind()
    {
        var path = Path.Combine(_dir.FullName, StateFiles.State);
        AtomicFile.Write(path, "{\"id\":\"a\",\"status\":\"created\"}"u8, durable: false);
        AtomicFile.Write(path, "{\"id\":\"a\",\"status\":\"running\"}"u8, durable: false);
        Assert.Equal(ShimStatus.Running, ShimClient.ReadStateFile(_dir.FullName)?.Status);
        Assert.Equal([StateFiles.State], _dir.GetFiles().Select(f => f.Name));
    }

    [Theory]
    [InlineData("")]
    [InlineData("{\"id\":\"a\",\"sta")]
    public void StateFile_LeftUnreadableByAHostCrash_ReadsAsMissing(string content)
    {
        File.WriteAllText(Path.Combine(_dir.FullName, StateFiles.State), content);
        Assert.Null(ShimClient.ReadStateFile(_dir.FullName));
    }
}
