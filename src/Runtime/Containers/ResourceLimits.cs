using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Containers;

/// <summary>CRI resources as cgroup limits, validated once for every caller (container create and
/// update, pod create and update): a bad value is InvalidArgument naming the field.</summary>
public static class ResourceLimits
{
    public static CgroupResources From(LinuxContainerResources? resources, string fieldPrefix = "")
    {
        try
        {
            var limits = CgroupResourcesFromSpec.Map(SpecBuilder.Resources(resources));
            CgroupValidation.Validate(limits);
            return limits;
        }
        catch (ArgumentException e)
        {
            throw Fail.InvalidArgument(fieldPrefix + e.Message);
        }
    }
}
