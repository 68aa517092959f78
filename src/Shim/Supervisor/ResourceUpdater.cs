using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Files;
using CriRuntime.Operations;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The shim's "update" operation: a live container's new linux.resources go to its
/// cgroup and to the bundle's config.json, so the bundle keeps saying what the container has.
/// The file first, then the cgroup, as containerd updates the spec before the task: the file is
/// replaced atomically and its old content is known exactly (the spec in hand), so a failed
/// cgroup write is undone by writing the old file back; a cgroup write cannot be undone as
/// exactly (a limit that was unset before has no "unset" to write back).</summary>
internal sealed class ResourceUpdater(string bundle, ICgroupManager cgroup, Action<string, Exception> undoFailed)
{
    /// <summary>Validates, rewrites config.json, writes the cgroup; returns the updated spec.</summary>
    /// <exception cref="ArgumentException">A value the kernel would refuse (naming the OCI field), or device rules.</exception>
    /// <exception cref="IOException">config.json or the cgroup could not be written; config.json is as before.</exception>
    public Spec Apply(Spec current, LinuxResources update)
    {
        var merged = ResourceUpdate.Merge(current.Linux?.Resources, update);
        CgroupValidation.Validate(CgroupResourcesFromSpec.Map(merged));
        var next = current with { Linux = (current.Linux ?? new Linux()) with { Resources = merged } };

        using var undo = new UndoSteps(undoFailed);
        SpecFile.Save(bundle, next);
        undo.Add("restore config.json", () => SpecFile.Save(bundle, current));
        // Only what the update sets is written: values it leaves null are in the cgroup already.
        cgroup.Update(CgroupResourcesFromSpec.Map(update));
        undo.Commit();
        return next;
    }
}
