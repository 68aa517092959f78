#!/usr/bin/env bash
# Install the Debian packages CriRuntime needs to build, run and test.
# Idempotent: apt is only touched when a package is missing.
# Usage: hack/deps.sh [--bench]    (--bench also installs containerd, not started)
set -euo pipefail

pkgs=(
  docker-registry skopeo busybox-static runc containernetworking-plugins
  libseccomp-dev gcc make clang zlib1g-dev iproute2 iputils-ping util-linux iptables apache2-utils
  zstd jq curl procps psmisc tar gzip coreutils ca-certificates umoci
  # The partition /proc view (docs/partition-view.md): run by the daemon, not as a service.
  lxcfs
  # Observability tests: a real Prometheus scrapes the metrics listener; systemd-analyze verifies
  # the unit `make install` lays out.
  prometheus systemd
  # Disk-quota tests make a btrfs on a loop device (mkfs.btrfs) and look at its qgroups; the
  # daemon itself never runs the btrfs tools.
  btrfs-progs
  # CRIU 4.2.1 is built from source by hack/criu.sh (bookworm's 3.17 does not work here).
  libbsd-dev libcap-dev libnet1-dev libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev
  protobuf-c-compiler protobuf-compiler uuid-dev pkg-config libgnutls28-dev xz-utils
)
for arg in "$@"; do
  case "$arg" in
    --bench) pkgs+=(containerd) ;;
    *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  # dpkg-query exits 0 for removed-but-configured packages too, so check the status text.
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$st" == installed ]] || missing+=("$p")
done
here=$(dirname "$0")
if [[ ${#missing[@]} -eq 0 ]]; then "$here/criu.sh"; exit 0; fi

if [[ $(id -u) -ne 0 ]]; then echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; fi

# Debian's docker-registry and containerd start a daemon on install (docker-registry on :5000),
# which would collide with the instances our tests start themselves.  A policy-rc.d that
# returns 101 makes invoke-rc.d/deb-systemd-invoke skip starting any service during the install.
# Only add one when none exists (Docker-based images usually ship their own).
policy=/usr/sbin/policy-rc.d
ours=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; ours=1
fi
trap '[[ $ours -eq 1 ]] && rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"

# Keep the services from coming back on a later boot (systemd hosts only; harmless elsewhere).
if [[ -d /run/systemd/system ]]; then
  systemctl disable --now docker-registry.service containerd.service prometheus.service >/dev/null 2>&1 || true
fi
for svc in docker-registry containerd prometheus; do
  if [[ -x /etc/init.d/$svc ]]; then update-rc.d "$svc" disable >/dev/null 2>&1 || true; fi
done

"$here/criu.sh"
