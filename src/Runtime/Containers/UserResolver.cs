using CriRuntime.Errors;

namespace CriRuntime.Containers;

/// <summary>Turns the user a container asks for (CRI run_as_user/run_as_username/run_as_group, or
/// the image's "user[:group]") into numeric ids, reading /etc/passwd and /etc/group of the
/// container's own root file system, never the host's.</summary>
public static class UserResolver
{
    /// <summary>The process's identity as decided at creation: <see cref="AdditionalGids"/> is
    /// what setgroups(2) gets, the primary gid first (as containerd puts it, so a process that
    /// changes its gid keeps the group), then the image's groups for the user (policy Merge
    /// only), then the requested supplemental groups; without duplicates.</summary>
    public sealed record Resolved(uint Uid, uint Gid, IReadOnlyList<uint> AdditionalGids, string? Name);

    /// <param name="supplementalGroups">The requested groups (the kubelet puts the pod's
    /// supplementalGroups and fsGroup in every container's security context).</param>
    /// <param name="policy">supplemental_groups_policy: Merge adds the groups the image's
    /// /etc/group lists the user in, Strict only the requested ones.</param>
    public static Resolved Resolve(string rootfs, long? runAsUser, string? runAsUsername, long? runAsGroup,
        IEnumerable<long> supplementalGroups, string? imageUser, Cri.V1.SupplementalGroupsPolicy policy = Cri.V1.SupplementalGroupsPolicy.Merge)
    {
        if (policy is not (Cri.V1.SupplementalGroupsPolicy.Merge or Cri.V1.SupplementalGroupsPolicy.Strict))
            throw Fail.InvalidArgument($"config.linux.security_context.supplemental_groups_policy: {(int)policy} is neither Merge (0) nor Strict (1)");
        // As containerd and CRI-O: a group alone is refused even when the image names a user
        // (the kubelet's runAsGroup is meant to come with runAsUser; half of an image's user:group
        // overridden is not a combination any of them builds).
        if (runAsGroup is not null && runAsUser is null && string.IsNullOrEmpty(runAsUsername))
            throw Fail.InvalidArgument($"config.linux.security_context.run_as_group: {runAsGroup} is set without run_as_user or run_as_username");
        var passwd = ReadTable(Path.Combine(rootfs, "etc", "passwd"));
        var group = ReadTable(Path.Combine(rootfs, "etc", "group"));

        string? userPart = null, groupPart = null;
        if (runAsUser is not null) userPart = runAsUser.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        else if (!string.IsNullOrEmpty(runAsUsername)) userPart = runAsUsername;
        else if (!string.IsNullOrEmpty(imageUser))
        {
            var parts = imageUser.Split(':', 2);
            userPart = parts[0];
            groupPart = parts.Length > 1 ? parts[1] : null;
        }

        uint uid = 0, gid = 0;
        string? name = null;
        if (userPart is not null)
        {
            if (uint.TryParse(userPart, out uid))
            {
                var entry = passwd.FirstOrDefault(p => p.Length > 3 && p[2] == userPart);
                if (entry is not null) { name = entry[0]; gid = uint.Parse(entry[3], System.Globalization.CultureInfo.InvariantCulture); }
            }
            else
            {
                var entry = passwd.FirstOrDefault(p => p.Length > 3 && p[0] == userPart)
                    ?? throw Fail.InvalidArgument($"user '{userPart}' not found in the image's /etc/passwd");
                name = entry[0];
                uid = uint.Parse(entry[2], System.Globalization.CultureInfo.InvariantCulture);
                gid = uint.Parse(entry[3], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        if (runAsGroup is not null) gid = (uint)runAsGroup.Value;
        else if (groupPart is not null)
        {
            if (!uint.TryParse(groupPart, out gid))
            {
                var entry = group.FirstOrDefault(g => g.Length > 2 && g[0] == groupPart)
                    ?? throw Fail.InvalidArgument($"group '{groupPart}' not found in the image's /etc/group");
                gid = uint.Parse(entry[2], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        var groups = new List<uint> { gid };
        if (policy == Cri.V1.SupplementalGroupsPolicy.Merge && name is not null)
            foreach (var g in group)
                if (g.Length > 3 && g[3].Split(',').Contains(name) && uint.TryParse(g[2], out var id)) groups.Add(id);
        foreach (var s in supplementalGroups) groups.Add((uint)s);
        return new Resolved(uid, gid, [.. groups.Distinct()], name);
    }

    private static List<string[]> ReadTable(string path)
    {
        // The image's file may be a symlink pointing anywhere; only read it when it resolves inside.
        try
        {
            if (!File.Exists(path)) return [];
            var info = new FileInfo(path);
            if (info.LinkTarget is not null) return [];
            return [.. File.ReadLines(path).Where(l => l.Length > 0 && l[0] != '#').Select(l => l.Split(':'))];
        }
        catch (IOException) { return []; }
    }
}
