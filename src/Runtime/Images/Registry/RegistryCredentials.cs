using System.Text;
using CriRuntime.Cri.V1;

namespace CriRuntime.Images.Registry;

/// <summary>The credentials of one pull, from the CRI AuthConfig. Never logged: ToString is
/// redacted, and nothing formats the secret fields into messages.</summary>
public sealed class RegistryCredentials
{
    public string? Username { get; }
    public string? Password { get; }
    /// <summary>An OAuth2 refresh token for the registry's token endpoint.</summary>
    public string? IdentityToken { get; }
    /// <summary>A bearer token sent to the registry as is.</summary>
    public string? RegistryToken { get; }

    public static readonly RegistryCredentials Anonymous = new(null, null, null, null);

    public RegistryCredentials(string? username, string? password, string? identityToken, string? registryToken)
    {
        Username = NullIfEmpty(username);
        Password = NullIfEmpty(password);
        IdentityToken = NullIfEmpty(identityToken);
        RegistryToken = NullIfEmpty(registryToken);
    }

    public bool HasBasic => Username is not null && Password is not null;
    public bool IsAnonymous => !HasBasic && IdentityToken is null && RegistryToken is null;

    /// <summary>A stable key for caching tokens per identity without keeping the secret in the key.</summary>
    public string CacheKey => IsAnonymous ? "anonymous"
        : Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            Encoding.UTF8.GetBytes($"{Username}\0{Password}\0{IdentityToken}\0{RegistryToken}")));

    /// <summary>"auth" is base64("user:password") and wins over username/password when set.</summary>
    public static RegistryCredentials From(AuthConfig? auth)
    {
        if (auth is null) return Anonymous;
        string? user = auth.Username, pass = auth.Password;
        if (!string.IsNullOrEmpty(auth.Auth))
        {
            string decoded;
            try { decoded = Encoding.UTF8.GetString(Convert.FromBase64String(auth.Auth)); }
            catch (FormatException) { throw Errors.Fail.InvalidArgument("auth config: \"auth\" is not valid base64"); }
            var colon = decoded.IndexOf(':');
            if (colon < 0) throw Errors.Fail.InvalidArgument("auth config: \"auth\" must encode \"username:password\"");
            user = decoded[..colon];
            pass = decoded[(colon + 1)..];
        }
        return new RegistryCredentials(user, pass, auth.IdentityToken, auth.RegistryToken);
    }

    public string BasicHeaderValue => Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Username}:{Password}"));

    public override string ToString() => IsAnonymous ? "anonymous" : $"user={Username ?? "(token)"} (secrets redacted)";

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
