using System.Text;
using System.Text.Json;

namespace CriRuntime.Storage;

/// <summary>A YAML node of <see cref="YamlSubset"/>: a scalar (null for YAML's null), a sequence or
/// a mapping (keys in file order), with the line it starts on for error messages.</summary>
public abstract record YamlNode(int Line);
public sealed record YamlScalar(int Line, string? Value) : YamlNode(Line);
public sealed record YamlSequence(int Line, IReadOnlyList<YamlNode> Items) : YamlNode(Line);
public sealed record YamlMapping(int Line, IReadOnlyList<KeyValuePair<string, YamlNode>> Entries) : YamlNode(Line);

/// <summary>The part of YAML that configuration files like goresctrl's blockio classes use: block
/// mappings and sequences by indentation (a "- KEY: VALUE" item opening a mapping), flow
/// sequences of scalars (<c>[a, b]</c>), plain, single- and double-quoted scalars, comments. A
/// document starting with '{' is read as JSON (which YAML includes). Anchors, tags, block
/// scalars and flow mappings are refused with the line named rather than misread; no library
/// is needed and nothing reflects over types (NativeAOT).</summary>
public static class YamlSubset
{
    private sealed record Line(int No, int Indent, string Text);

    public static YamlNode? Parse(string text)
    {
        var trimmed = text.TrimStart();
        if (trimmed.StartsWith('{')) return FromJson(text);
        var lines = Lines(text);
        if (lines.Count == 0) return null;
        var pos = 0;
        var node = Block(lines, ref pos, lines[0].Indent);
        if (pos < lines.Count) throw new FormatException($"line {lines[pos].No}: unexpected indentation or content");
        return node;
    }

    private static List<Line> Lines(string text)
    {
        var result = new List<Line>();
        var no = 0;
        foreach (var raw in text.Replace("\r\n", "\n").Split('\n'))
        {
            no++;
            var content = StripComment(raw).TrimEnd();
            var body = content.TrimStart(' ');
            if (body.Length == 0 || body is "---" or "...") continue;
            if (body[0] == '\t') throw new FormatException($"line {no}: tabs are not allowed in indentation");
            if (body[0] is '&' or '*' or '!' or '|' or '>' or '%' or '?')
                throw new FormatException($"line {no}: '{body[0]}' (anchors, tags, block scalars, directives, complex keys) is not supported");
            result.Add(new Line(no, content.Length - body.Length, body));
        }
        return result;
    }

    /// <summary>The line without a comment: '#' at its start or after a space, outside quotes.</summary>
    private static string StripComment(string line)
    {
        char quote = '\0';
        for (var i = 0; i < line.Length; i++)
        {
            var ch = line[i];
            if (quote != '\0') { if (ch == quote) quote = '\0'; continue; }
            if (ch is '"' or '\'' && (i == 0 || line[i - 1] is ' ' or '[' or ',' or ':' or '-')) quote = ch;
            else if (ch == '#' && (i == 0 || line[i - 1] is ' ' or '\t')) return line[..i];
        }
        return line;
    }

    private static bool IsDash(string text) => text == "-" || text.StartsWith("- ", StringComparison.Ordinal);

    private static YamlNode Block(List<Line> lines, ref int pos, int indent) =>
        IsDash(lines[pos].Text) ? Sequence(lines, ref pos, indent) : KeyOf(lines[pos].Text) is not null ? Mapping(lines, ref pos, indent) : Lone(lines, ref pos);

    private static YamlNode Lone(List<Line> lines, ref int pos)
    {
        var line = lines[pos++];
        return Value(line.Text, line.No);
    }

    private static YamlSequence Sequence(List<Line> lines, ref int pos, int indent)
    {
        var start = lines[pos].No;
        var items = new List<YamlNode>();
        while (pos < lines.Count && lines[pos].Indent == indent && IsDash(lines[pos].Text))
        {
            var line = lines[pos];
            var rest = line.Text[1..].TrimStart(' ');
            if (rest.Length == 0)
            {
                pos++;
                items.Add(pos < lines.Count && lines[pos].Indent > indent ? Block(lines, ref pos, lines[pos].Indent) : new YamlScalar(line.No, null));
                continue;
            }
            // "- KEY: VALUE" opens a mapping whose further keys are indented to KEY's column.
            var column = indent + line.Text.Length - rest.Length;
            lines[pos] = line with { Indent = column, Text = rest };
            items.Add(Block(lines, ref pos, column));
        }
        if (pos < lines.Count && lines[pos].Indent > indent) throw new FormatException($"line {lines[pos].No}: unexpected indentation");
        return new YamlSequence(start, items);
    }

    private static YamlMapping Mapping(List<Line> lines, ref int pos, int indent)
    {
        var start = lines[pos].No;
        var entries = new List<KeyValuePair<string, YamlNode>>();
        while (pos < lines.Count && lines[pos].Indent == indent)
        {
            var line = lines[pos];
            var colon = KeyOf(line.Text) ?? throw new FormatException($"line {line.No}: expected 'KEY: VALUE', got '{line.Text}'");
            var key = Unquote(line.Text[..colon].TrimEnd(), line.No);
            if (entries.Any(e => e.Key == key)) throw new FormatException($"line {line.No}: key '{key}' appears twice");
            var value = line.Text[(colon + 1)..].Trim();
            pos++;
            YamlNode node;
            if (value.Length > 0) node = Value(value, line.No);
            // A sequence may sit at its key's own indentation (YAML allows "key:\n- a").
            else if (pos < lines.Count && (lines[pos].Indent > indent || (lines[pos].Indent == indent && IsDash(lines[pos].Text))))
                node = Block(lines, ref pos, lines[pos].Indent);
            else node = new YamlScalar(line.No, null);
            entries.Add(new(key, node));
        }
        if (pos < lines.Count && lines[pos].Indent > indent) throw new FormatException($"line {lines[pos].No}: unexpected indentation");
        return new YamlMapping(start, entries);
    }

    /// <summary>The index of the ':' ending a mapping key (followed by a space or the line's end,
    /// outside quotes), or null when the line is no "KEY: VALUE".</summary>
    private static int? KeyOf(string text)
    {
        if (text[0] is '[' or '{') return null;
        char quote = text[0] is '"' or '\'' ? text[0] : '\0';
        for (var i = quote == '\0' ? 0 : 1; i < text.Length; i++)
        {
            if (quote != '\0') { if (text[i] == quote) quote = '\0'; continue; }
            if (text[i] == ':' && (i + 1 == text.Length || text[i + 1] == ' ')) return i;
        }
        return null;
    }

    private static YamlNode Value(string text, int line)
    {
        if (text.StartsWith('{')) throw new FormatException($"line {line}: flow mappings ({{...}}) are not supported");
        if (!text.StartsWith('[')) return new YamlScalar(line, Scalar(text, line));
        if (!text.EndsWith(']')) throw new FormatException($"line {line}: a flow sequence must end on its line with ']'");
        var inner = text[1..^1].Trim();
        var items = new List<YamlNode>();
        if (inner.Length == 0) return new YamlSequence(line, items);
        var sb = new StringBuilder();
        char quote = '\0';
        foreach (var ch in inner + ",")
        {
            if (quote != '\0') { if (ch == quote) quote = '\0'; sb.Append(ch); continue; }
            if (ch is '"' or '\'' && sb.ToString().Trim().Length == 0) { quote = ch; sb.Append(ch); continue; }
            if (ch is '[' or '{') throw new FormatException($"line {line}: nested flow collections are not supported");
            if (ch != ',') { sb.Append(ch); continue; }
            items.Add(new YamlScalar(line, Scalar(sb.ToString().Trim(), line)));
            sb.Clear();
        }
        if (quote != '\0') throw new FormatException($"line {line}: unterminated quote");
        return new YamlSequence(line, items);
    }

    private static string? Scalar(string text, int line) =>
        text is "" or "~" or "null" or "Null" or "NULL" ? null : Unquote(text, line);

    private static string Unquote(string text, int line)
    {
        if (text.Length == 0 || text[0] is not ('"' or '\'')) return text;
        var q = text[0];
        if (text.Length < 2 || text[^1] != q) throw new FormatException($"line {line}: unterminated quote in {text}");
        var inner = text[1..^1];
        if (q == '\'') return inner.Replace("''", "'");
        var sb = new StringBuilder();
        for (var i = 0; i < inner.Length; i++)
        {
            if (inner[i] != '\\' || i + 1 == inner.Length) { sb.Append(inner[i]); continue; }
            sb.Append(inner[++i] switch { 'n' => '\n', 't' => '\t', '"' => '"', '\\' => '\\', '/' => '/', var other => throw new FormatException($"line {line}: escape \\{other} is not supported") });
        }
        return sb.ToString();
    }

    private static YamlNode? FromJson(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return Json(doc.RootElement);
        }
        catch (JsonException e) { throw new FormatException($"invalid JSON: {e.Message}", e); }
    }

    private static YamlNode Json(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => new YamlMapping(0, [.. e.EnumerateObject().Select(p => new KeyValuePair<string, YamlNode>(p.Name, Json(p.Value)))]),
        JsonValueKind.Array => new YamlSequence(0, [.. e.EnumerateArray().Select(Json)]),
        JsonValueKind.String => new YamlScalar(0, e.GetString()),
        JsonValueKind.Null => new YamlScalar(0, null),
        _ => new YamlScalar(0, e.GetRawText()),
    };
}
