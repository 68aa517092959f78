#!/usr/bin/env bash
# Installs a default pod network when the CNI config dir has no network config yet, so that
# `make run` gives a node whose pods get addresses: bridge cni0 + host-local 10.88.0.0/16 +
# portmap + loopback, using Debian's containernetworking-plugins (/usr/lib/cni).
#   hack/cni-default.sh [CONF_DIR]    (default /etc/cni/net.d)
set -euo pipefail
dir=${1:-/etc/cni/net.d}
mkdir -p "$dir"
if compgen -G "$dir/*.conflist" >/dev/null || compgen -G "$dir/*.conf" >/dev/null || compgen -G "$dir/*.json" >/dev/null; then
  exit 0   # the operator's network wins; never overwrite it
fi
tmp=$(mktemp "$dir/.10-criruntime.XXXXXX")
cat >"$tmp" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "criruntime",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
chmod 0644 "$tmp"
mv "$tmp" "$dir/10-criruntime.conflist"
