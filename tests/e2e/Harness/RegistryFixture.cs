using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>A real registry (Debian's docker-registry) on 127.0.0.1 holding the test images, which
/// hack/images/build-images.sh builds from busybox-static as OCI layouts and push-images.sh pushes
/// with skopeo. One per test collection; stopped (and its storage removed) at the end.</summary>
public sealed class RegistryFixture : IDisposable
{
    public string Dir { get; }
    public int Port { get; }
    public string Host => $"127.0.0.1:{Port}";
    /// <summary>Where the OCI layouts were built (images/NAME, with NAME/digest).</summary>
    public string ImagesDir { get; }

    public RegistryFixture() : this(htpasswd: null) { }

    public RegistryFixture(string? htpasswd)
    {
        Dir = Directory.CreateTempSubdirectory("criruntime-registry-").FullName;
        ImagesDir = TestImages.Build();
        Port = FreePort();
        var args = new List<string> { "start", Dir, Port.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (htpasswd is not null) args.AddRange(["--htpasswd", htpasswd]);
        Shell.Run(Repo.Hack("registry.sh"), [.. args]);
    }

    /// <summary>Pushes every test image as HOST/test/NAME:latest.</summary>
    public RegistryFixture WithTestImages(string? creds = null)
    {
        var args = new List<string> { ImagesDir, Host };
        if (creds is not null) args.AddRange(["--creds", creds]);
        Shell.Run(Repo.Hack("images/push-images.sh"), [.. args]);
        return this;
    }

    public string Image(string name) => $"{Host}/test/{name}:latest";
    public string Digest(string name) => File.ReadAllText(Path.Combine(ImagesDir, name, "digest")).Trim();
    public string ImageByDigest(string name) => $"{Host}/test/{name}@{Digest(name)}";

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        Shell.Run(Repo.Hack("registry.sh"), "stop", Dir);
        Directory.Delete(Dir, recursive: true);
    }
}

/// <summary>The shared test images, built once per test run into artifacts/test-images.</summary>
public static class TestImages
{
    private static readonly Lazy<string> Dir = new(() =>
    {
        var dir = Path.Combine(Repo.Root, "artifacts", "test-images");
        Shell.Run(Repo.Hack("images/build-images.sh"), dir);
        return dir;
    });

    public static string Build() => Dir.Value;
}

/// <summary>Runs a helper script or tool to completion; a non-zero exit fails the test with its output.</summary>
public static class Shell
{
    public static string Run(string file, params string[] args)
    {
        var (code, stdout, stderr) = TryRun(file, args);
        if (code != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {code}:\n{stdout}\n{stderr}");
        return stdout;
    }

    public static (int Code, string Stdout, string Stderr) TryRun(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}

[CollectionDefinition(Name)]
public sealed class RegistryCollection : ICollectionFixture<RegistryWithImages>
{
    public const string Name = "registry";
}

/// <summary>The registry with the test images pushed, shared by a test collection.</summary>
public sealed class RegistryWithImages : IDisposable
{
    public RegistryFixture Registry { get; } = new RegistryFixture().WithTestImages();
    public void Dispose() => Registry.Dispose();
}
