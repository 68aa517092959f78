namespace CriRuntime.Bench;

/// <summary>Merges the sections one run regenerated into the existing document, by `## `
/// heading: a regenerated section replaces the one of the same heading in place, a new one is
/// added before the targets, and every other section is kept as it was.</summary>
public static class DocMerge
{
    public sealed record Doc(string Preamble, IReadOnlyList<(string Title, string Text)> Sections);

    public static Doc Parse(string text)
    {
        var lines = text.Replace("\r\n", "\n").Split('\n');
        var preamble = new List<string>();
        var sections = new List<(string, List<string>)>();
        foreach (var line in lines)
        {
            if (line.StartsWith("## ", StringComparison.Ordinal)) sections.Add((line[3..].Trim(), [line]));
            else if (sections.Count == 0) preamble.Add(line);
            else sections[^1].Item2.Add(line);
        }
        return new Doc(string.Join('\n', preamble), [.. sections.Select(s => (s.Item1, string.Join('\n', s.Item2)))]);
    }

    /// <summary>The existing document with the fresh one's sections put in; the fresh preamble
    /// (title and introduction) wins. Sections titled in <paramref name="before"/> stay after
    /// the new ones.</summary>
    public static string Merge(string existing, string fresh, string before = "Targets")
    {
        var old = Parse(existing);
        var @new = Parse(fresh);
        var result = new List<string> { @new.Preamble.TrimEnd('\n') + "\n" };
        var placed = new HashSet<string>(StringComparer.Ordinal);
        var added = @new.Sections.Where(s => !old.Sections.Any(o => o.Title == s.Title)).ToList();
        var addedWritten = false;
        foreach (var (title, text) in old.Sections)
        {
            if (!addedWritten && title.StartsWith(before, StringComparison.Ordinal))
            {
                result.AddRange(added.Select(a => a.Text.TrimEnd('\n') + "\n"));
                addedWritten = true;
            }
            var replacement = @new.Sections.FirstOrDefault(s => s.Title == title);
            result.Add((replacement.Text ?? text).TrimEnd('\n') + "\n");
        }
        if (!addedWritten) result.AddRange(added.Select(a => a.Text.TrimEnd('\n') + "\n"));
        return string.Join('\n', result);
    }
}
