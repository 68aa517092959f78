using System.Text;

namespace CriRuntime.Images.Registry;

/// <summary>One challenge from a WWW-Authenticate header: a scheme ("Bearer", "Basic") and its
/// parameters (realm, service, scope...), parameter names lower-cased.</summary>
public sealed record AuthChallenge(string Scheme, IReadOnlyDictionary<string, string> Parameters)
{
    public string? this[string name] => Parameters.TryGetValue(name, out var v) ? v : null;
    public bool IsBearer => Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase);
    public bool IsBasic => Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase);
}

/// <summary>Parses WWW-Authenticate values (RFC 7235): challenges separated by commas, each a
/// scheme followed by comma-separated name=value pairs whose values are tokens or quoted strings
/// with backslash escapes. A new challenge starts at a token that is not followed by '='.</summary>
public static class WwwAuthenticate
{
    public static IReadOnlyList<AuthChallenge> Parse(string header)
    {
        var result = new List<AuthChallenge>();
        var i = 0;
        string? scheme = null;
        Dictionary<string, string>? parameters = null;
        while (true)
        {
            SkipSeparators(header, ref i);
            if (i >= header.Length) break;
            var token = ReadToken(header, ref i);
            if (token.Length == 0) { i++; continue; } // stray character: skip it rather than loop
            SkipSpaces(header, ref i);
            if (i < header.Length && header[i] == '=' && scheme is not null)
            {
                i++;
                SkipSpaces(header, ref i);
                var value = i < header.Length && header[i] == '"' ? ReadQuoted(header, ref i) : ReadToken(header, ref i);
                parameters![token.ToLowerInvariant()] = value;
            }
            else
            {
                if (scheme is not null) result.Add(new AuthChallenge(scheme, parameters!));
                scheme = token;
                parameters = new Dictionary<string, string>(StringComparer.Ordinal);
            }
        }
        if (scheme is not null) result.Add(new AuthChallenge(scheme, parameters!));
        return result;
    }

    private static void SkipSpaces(string s, ref int i) { while (i < s.Length && s[i] is ' ' or '\t') i++; }
    private static void SkipSeparators(string s, ref int i) { while (i < s.Length && s[i] is ' ' or '\t' or ',') i++; }

    private static string ReadToken(string s, ref int i)
    {
        var start = i;
        // token68 (used by some schemes' credentials) also allows '/', '+' and trailing '='s,
        // but '=' is our key/value separator; challenges in practice use plain tokens.
        while (i < s.Length && s[i] is not (' ' or '\t' or ',' or '=' or '"')) i++;
        return s[start..i];
    }

    private static string ReadQuoted(string s, ref int i)
    {
        var sb = new StringBuilder();
        i++; // opening quote
        while (i < s.Length && s[i] != '"')
        {
            if (s[i] == '\\' && i + 1 < s.Length) i++;
            sb.Append(s[i++]);
        }
        if (i < s.Length) i++; // closing quote
        return sb.ToString();
    }
}
