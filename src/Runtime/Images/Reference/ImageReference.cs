using System.Diagnostics.CodeAnalysis;
using System.Text.RegularExpressions;

namespace CriRuntime.Images.Reference;

/// <summary>A normalised image reference: registry domain, repository path, and a tag and/or
/// a digest. "busybox" becomes docker.io/library/busybox:latest, as docker and the kubelet expect.
/// Parsing follows the distribution reference grammar:
/// <code>
/// reference        := name [ ":" tag ] [ "@" digest ]
/// name             := [domain '/'] path-component ['/' path-component]*
/// domain           := host [':' port-number]
/// host             := domain-name | IPv4address | '[' IPv6address ']'
/// domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
/// path-component   := /[a-z0-9]+/ [separator /[a-z0-9]+/]*   separator := [_.] | __ | [-]+
/// tag              := /[\w][\w.-]{0,127}/
/// </code>
/// The first component is a domain only when it contains '.' or ':' or is "localhost" (docker's
/// rule), so "myrepo/app" is docker.io/myrepo/app.</summary>
public sealed partial record ImageReference(string Domain, string Path, string? Tag, Digest? Digest)
{
    public const string DockerHub = "docker.io";
    public const string DefaultTag = "latest";
    private const int MaxNameLength = 255;

    /// <summary>"docker.io/library/busybox".</summary>
    public string Name => $"{Domain}/{Path}";

    /// <summary>The name and tag: what repo_tags lists. Null for a reference with a digest, also
    /// "repo:tag@sha256:..." (the digest decides the image and the tag is not recorded, as
    /// containerd's ParseDockerRef drops it): the tag may name another image by now.</summary>
    public string? TagName => Tag is null || Digest is not null ? null : $"{Name}:{Tag}";

    /// <summary>name@digest for a given manifest digest: what repo_digests lists.</summary>
    public string DigestName(Digest digest) => $"{Name}@{digest}";

    public override string ToString() =>
        Name + (Tag is null ? "" : $":{Tag}") + (Digest is { } d ? $"@{d}" : "");

    /// <summary>Parses and normalises; throws <see cref="FormatException"/> whose message names
    /// the reference and what is wrong with it.</summary>
    public static ImageReference Parse(string reference) =>
        TryParse(reference, out var r, out var error) ? r : throw new FormatException(error);

    public static bool TryParse(string? reference, [NotNullWhen(true)] out ImageReference? result, [NotNullWhen(false)] out string? error)
    {
        result = null;
        if (string.IsNullOrEmpty(reference)) { error = "empty image reference"; return false; }
        string Bad(string why) => $"invalid image reference \"{reference}\": {why}";

        var rest = reference;
        Digest? digest = null;
        var at = rest.IndexOf('@');
        if (at >= 0)
        {
            var d = rest[(at + 1)..];
            if (!Images.Digest.TryParse(d, out var parsed)) { error = Bad($"invalid digest \"{d}\""); return false; }
            if (parsed.Algorithm != Images.Digest.Sha256) { error = Bad($"unsupported digest algorithm \"{parsed.Algorithm}\""); return false; }
            digest = parsed;
            rest = rest[..at];
        }

        string? tag = null;
        var lastSlash = rest.LastIndexOf('/');
        var colon = rest.LastIndexOf(':');
        if (colon > lastSlash)
        {
            tag = rest[(colon + 1)..];
            if (!TagRegex().IsMatch(tag)) { error = Bad($"invalid tag \"{tag}\""); return false; }
            rest = rest[..colon];
        }
        if (rest.Length == 0) { error = Bad("missing repository name"); return false; }
        if (rest.Length > MaxNameLength) { error = Bad($"repository name longer than {MaxNameLength} characters"); return false; }

        string domain, path;
        var slash = rest.IndexOf('/');
        var first = slash < 0 ? "" : rest[..slash];
        if (slash >= 0 && (first.Contains('.') || first.Contains(':') || first == "localhost" || first.Any(char.IsAsciiLetterUpper)))
        {
            domain = first;
            path = rest[(slash + 1)..];
            if (!DomainRegex().IsMatch(domain)) { error = Bad($"invalid registry host \"{domain}\""); return false; }
        }
        else
        {
            domain = DockerHub;
            path = rest;
        }
        // The legacy Docker Hub spellings normalise to docker.io.
        if (domain is "index.docker.io" or "registry-1.docker.io") domain = DockerHub;
        if (domain == DockerHub && !path.Contains('/')) path = $"library/{path}";

        if (path.Any(char.IsAsciiLetterUpper)) { error = Bad("repository name must be lowercase"); return false; }
        if (!PathRegex().IsMatch(path)) { error = Bad($"invalid repository name \"{path}\""); return false; }
        if (slash < 0 && tag is null && digest is null && HexIdRegex().IsMatch(rest))
        {
            error = Bad("a 64-character hexadecimal string is an image id, not a repository name");
            return false;
        }

        if (tag is null && digest is null) tag = DefaultTag;
        result = new ImageReference(domain, path, tag, digest);
        error = null;
        return true;
    }

    /// <summary>The same repository under another tag.</summary>
    public ImageReference WithTag(string tag) => this with { Tag = tag, Digest = null };

    [GeneratedRegex(@"^[\w][\w.-]{0,127}$", RegexOptions.CultureInvariant)]
    private static partial Regex TagRegex();

    // domain-name or IPv4 (which domain-name already matches) or [IPv6], optional port.
    [GeneratedRegex(@"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex DomainRegex();

    [GeneratedRegex(@"^[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*)*$", RegexOptions.CultureInvariant)]
    private static partial Regex PathRegex();

    [GeneratedRegex("^[a-f0-9]{64}$", RegexOptions.CultureInvariant)]
    private static partial Regex HexIdRegex();
}
