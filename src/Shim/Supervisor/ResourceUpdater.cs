using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Files;
using CriRuntime.Operations;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The shim's "update" operation: a live container's new linux.resources go to its
/// cgroup and to the bundle's config.json, so the bundle keeps saying what the container has.
/// The file first, then the cgroup, as containerd updates the spec before the task: the file is
/// replaced atomically and its old content is known exactly (the spec in hand). A cgroup write
/// that fails part way (one controller written, the next refused) is undone by writing the
/// limits of the old spec back (<see cref="CgroupRestore"/>: as exactly as the kernel allows),
/// then the old file.</summary>
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
        var written = CgroupResourcesFromSpec.Map(update);
        undo.Add("restore cgroup limits", () => cgroup.Update(CgroupRestore.Previous(CgroupResourcesFromSpec.Map(current.Linux?.Resources), written)));
        cgroup.Update(written);
        undo.Commit();
        return next;
    }
}
