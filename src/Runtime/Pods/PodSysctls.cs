using CriRuntime.Errors;
using CriRuntime.Namespaces;

namespace CriRuntime.Pods;

/// <summary>Which namespace a sysctl belongs to; only namespaced sysctls may be set per pod.</summary>
public static class PodSysctls
{
    public static NamespaceKind Classify(string key)
    {
        if (key.StartsWith("net.", StringComparison.Ordinal)) return NamespaceKind.Net;
        if (key is "kernel.shmmax" or "kernel.shmall" or "kernel.shmmni" or "kernel.shm_rmid_forced"
            or "kernel.msgmax" or "kernel.msgmnb" or "kernel.msgmni" or "kernel.sem"
            || key.StartsWith("fs.mqueue.", StringComparison.Ordinal))
            return NamespaceKind.Ipc;
        if (key is "kernel.hostname" or "kernel.domainname") return NamespaceKind.Uts;
        throw Fail.InvalidArgument($"config.linux.sysctls: '{key}' is not a namespaced sysctl");
    }
}
