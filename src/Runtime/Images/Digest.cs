using System.Security.Cryptography;

namespace CriRuntime.Images;

/// <summary>A content digest "algorithm:hex". Only sha256 is stored and verified (it is the only
/// algorithm registries serve in practice); parsing still accepts the grammar so a reference with
/// another algorithm fails with a message naming it rather than as a malformed string.</summary>
public readonly record struct Digest(string Algorithm, string Hex)
{
    public const string Sha256 = "sha256";

    public override string ToString() => $"{Algorithm}:{Hex}";

    public static Digest Parse(string value) =>
        TryParse(value, out var d) ? d : throw new FormatException($"invalid digest \"{value}\"");

    /// <summary>digest := algorithm ":" hex, algorithm components [A-Za-z][A-Za-z0-9]* joined by
    /// [+._-], hex at least 32 chars; sha256 must be exactly 64 lowercase hex chars.</summary>
    public static bool TryParse(string? value, out Digest digest)
    {
        digest = default;
        if (string.IsNullOrEmpty(value)) return false;
        var colon = value.IndexOf(':');
        if (colon <= 0) return false;
        var alg = value[..colon];
        var hex = value[(colon + 1)..];
        if (!ValidAlgorithm(alg) || hex.Length < 32) return false;
        foreach (var c in hex)
            if (!char.IsAsciiHexDigit(c)) return false;
        if (alg == Sha256 && (hex.Length != 64 || hex.Any(char.IsAsciiLetterUpper))) return false;
        digest = new Digest(alg, hex);
        return true;
    }

    private static bool ValidAlgorithm(string alg)
    {
        var startOfComponent = true;
        foreach (var c in alg)
        {
            if (startOfComponent)
            {
                if (!char.IsAsciiLetter(c)) return false;
                startOfComponent = false;
            }
            else if (c is '+' or '.' or '_' or '-') startOfComponent = true;
            else if (!char.IsAsciiLetterOrDigit(c)) return false;
        }
        return !startOfComponent;
    }

    public static Digest Of(ReadOnlySpan<byte> content) => new(Sha256, Convert.ToHexStringLower(SHA256.HashData(content)));

    public static Digest FromHash(byte[] sha256) => new(Sha256, Convert.ToHexStringLower(sha256));
}
