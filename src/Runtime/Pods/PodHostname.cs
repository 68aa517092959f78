using CriRuntime.Cri.V1;
using CriRuntime.Errors;

namespace CriRuntime.Pods;

/// <summary>The hostname a pod's UTS namespace gets.</summary>
public static class PodHostname
{
    /// <summary>Linux's limit (HOST_NAME_MAX): sethostname refuses longer names.</summary>
    public const int MaxBytes = 64;

    /// <summary>config.hostname when given (the kubelet sends the pod's hostname, or its FQDN with
    /// setHostnameAsFQDN); without one the node's hostname, as containerd and CRI-O do (never the
    /// pod's metadata name, which may be longer than a hostname can be).</summary>
    public static string For(PodSandboxConfig config, Func<string> nodeHostname)
    {
        var name = config.Hostname;
        if (name.Length == 0) return nodeHostname();
        if (System.Text.Encoding.UTF8.GetByteCount(name) > MaxBytes)
            throw Fail.InvalidArgument($"config.hostname: '{name}' is longer than {MaxBytes} bytes");
        // RFC 1123 names (what Kubernetes validates pod hostnames and subdomains against), in
        // either case: letters, digits, '-' and '.', labels neither empty nor edged with '-'.
        foreach (var label in name.Split('.'))
        {
            if (label.Length == 0 || label[0] == '-' || label[^1] == '-' || !label.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '-'))
                throw Fail.InvalidArgument($"config.hostname: '{name}' is not a valid hostname (RFC 1123: letters, digits, '-', '.')");
        }
        return name;
    }
}
