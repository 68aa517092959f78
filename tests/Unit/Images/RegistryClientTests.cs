using System.Net;
using System.Net.Http.Headers;
using System.Text;
using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Images;
using CriRuntime.Images.Reference;
using CriRuntime.Images.Registry;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Images;

public class RegistryClientTests
{
    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>A registry behind docker-style token auth: /v2/ paths need "Bearer T&lt;n&gt;",
    /// /token hands out T1, T2... (basic credentials checked when <see cref="User"/> is set).</summary>
    private sealed class FakeRegistry : HttpMessageHandler
    {
        public static readonly byte[] Manifest = Encoding.UTF8.GetBytes("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}""");
        public string? User;
        public int TokenRequests;
        public int ExpiresIn = 300;
        public List<string> Seen = [];
        public string? LastTokenQuery;
        public string? LastAccept;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            var uri = request.RequestUri!;
            Seen.Add($"{uri.Host}{uri.AbsolutePath}");
            if (uri.AbsolutePath == "/token")
            {
                LastTokenQuery = uri.Query;
                if (User is not null && request.Headers.Authorization?.Parameter != Convert.ToBase64String(Encoding.UTF8.GetBytes(User)))
                    return Task.FromResult(new HttpResponseMessage(HttpStatusCode.Unauthorized));
                TokenRequests++;
                return Json($$"""{"token":"T{{TokenRequests}}","expires_in":{{ExpiresIn}}}""");
            }
            if (uri.Host == "down.example") throw new HttpRequestException("connection refused");
            if (request.Headers.Authorization is not { Scheme: "Bearer" } auth || auth.Parameter != $"T{TokenRequests}")
            {
                var r = new HttpResponseMessage(HttpStatusCode.Unauthorized);
                r.Headers.TryAddWithoutValidation("WWW-Authenticate",
                    """Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull" """);
                return Task.FromResult(r);
            }
            if (uri.AbsolutePath == "/v2/team/app/manifests/latest")
            {
                LastAccept = request.Headers.Accept.ToString();
                var r = new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent(Manifest) };
                r.Content.Headers.ContentType = new MediaTypeHeaderValue("application/vnd.oci.image.manifest.v1+json");
                return Task.FromResult(r);
            }
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.NotFound));
        }

        private static Task<HttpResponseMessage> Json(string s) =>
            Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(s, Encoding.UTF8, "application/json") });
    }

    private static (RegistryClient Client, FakeRegistry Fake, Clock Clock) Make(RegistrySection? config = null)
    {
        var fake = new FakeRegistry();
        var http = new HttpClient(fake);
        var clock = new Clock();
        var client = new RegistryClient(http, new RegistryAuth(http, clock), new RegistryEndpoints(config ?? new RegistrySection()), NullLogger<RegistryClient>.Instance);
        return (client, fake, clock);
    }

    private static RegistryRepository Open(RegistryClient c, string image, RegistryCredentials? creds = null) =>
        c.Open(ImageReference.Parse(image), creds ?? RegistryCredentials.Anonymous, TimeSpan.FromSeconds(10));

    [Fact]
    public async Task Resolve_FollowsBearerChallenge_AndCachesTheToken()
    {
        var (client, fake, _) = Make();
        var m = await Open(client, "registry.example/team/app").ResolveAsync(CancellationToken.None);
        Assert.Equal(Digest.Of(FakeRegistry.Manifest), m.Digest);
        Assert.Equal(1, fake.TokenRequests);
        Assert.Contains("scope=repository%3Ateam%2Fapp%3Apull", fake.LastTokenQuery);
        Assert.Contains("service=registry.example", fake.LastTokenQuery);
        foreach (var type in new[] { "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                     "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json" })
            Assert.Contains(type, fake.LastAccept);

        fake.Seen.Clear();
        await Open(client, "registry.example/team/app").ResolveAsync(CancellationToken.None);
        Assert.Equal(1, fake.TokenRequests);                       // cached
        Assert.Equal(["registry.example/v2/team/app/manifests/latest"], fake.Seen); // authorised up front
    }

    [Fact]
    public async Task Resolve_RenewsTheTokenAfterItExpires()
    {
        var (client, fake, clock) = Make();
        await Open(client, "registry.example/team/app").ResolveAsync(CancellationToken.None);
        clock.Now += TimeSpan.FromSeconds(301);
        await Open(client, "registry.example/team/app").ResolveAsync(CancellationToken.None);
        Assert.Equal(2, fake.TokenRequests);
    }

    [Fact]
    public async Task Resolve_SendsBasicCredentialsToTheTokenService_AndReportsRefusal()
    {
        var (client, fake, _) = Make();
        fake.User = "user:pw";
        var e = await Assert.ThrowsAsync<CriException>(() => Open(client, "registry.example/team/app").ResolveAsync(CancellationToken.None));
        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.Contains("401", e.Message);
        Assert.Contains("anonymous", e.Message);

        var ok = await Open(client, "registry.example/team/app", new RegistryCredentials("user", "pw", null, null)).ResolveAsync(CancellationToken.None);
        Assert.Equal(Digest.Of(FakeRegistry.Manifest), ok.Digest);
    }

    [Fact]
    public async Task Resolve_SkipsAMirrorThatIsDown_AndNamesIt()
    {
        var (client, fake, _) = Make(new RegistrySection
        {
            Mirrors = new Dictionary<string, RegistryMirror> { ["registry.example"] = new(["https://down.example"]) },
        });
        var repo = Open(client, "registry.example/team/app");
        await repo.ResolveAsync(CancellationToken.None);
        Assert.Equal("registry.example", repo.Endpoint.Host);
        Assert.Equal("down.example/v2/team/app/manifests/latest", fake.Seen[0]);
    }

    [Fact]
    public async Task Resolve_UnknownTag_IsNotFound()
    {
        var (client, _, _) = Make();
        var e = await Assert.ThrowsAsync<CriException>(() => Open(client, "registry.example/team/app:missing").ResolveAsync(CancellationToken.None));
        Assert.Equal(ErrorKind.NotFound, e.Kind);
    }

    [Fact]
    public void Endpoints_DockerHubAndSchemes()
    {
        var endpoints = new RegistryEndpoints(new RegistrySection { Insecure = ["insecure.example:5000"] });
        Assert.Equal("https://registry-1.docker.io/", endpoints.For("docker.io").Single().BaseUri.ToString());
        Assert.Equal("http://insecure.example:5000/", endpoints.For("insecure.example:5000").Single().BaseUri.ToString());
        Assert.Equal("http://localhost:5000/", endpoints.For("localhost:5000").Single().BaseUri.ToString());
        Assert.Equal("http://127.0.0.1:5000/", endpoints.For("127.0.0.1:5000").Single().BaseUri.ToString());
        Assert.Equal("https://quay.io/", endpoints.For("quay.io").Single().BaseUri.ToString());
    }

    [Fact]
    public void Credentials_FromAuthField_AndRedacted()
    {
        var c = RegistryCredentials.From(new Cri.V1.AuthConfig { Auth = Convert.ToBase64String("me:p:w"u8) });
        Assert.Equal("me", c.Username);
        Assert.Equal("p:w", c.Password);
        Assert.DoesNotContain("p:w", c.ToString());
        Assert.Throws<CriException>(() => RegistryCredentials.From(new Cri.V1.AuthConfig { Auth = "!!" }));
        Assert.True(RegistryCredentials.From(null).IsAnonymous);
    }
}
