#!/usr/bin/env bash
# Build the benchmark's pause image (a static C pause, see pause.c) as an OCI layout, for
# containerd's sandbox_image: registry.k8s.io is unreachable from this machine.
#   hack/bench/build-pause.sh OUT_DIR     -> OUT_DIR/pause (tag "latest"), OUT_DIR/pause/digest
# Needs gcc with a static libc (libc6-dev), GNU tar, gzip, jq.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
OUT=$1/pause
export LC_ALL=C TZ=UTC
umask 022
EPOCH=1704067200
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/root"
gcc -static -Os -s -o "$WORK/root/pause" "$(dirname "$0")/pause.c"
tar -C "$WORK/root" --format=posix --pax-option='delete=atime,delete=ctime' --sort=name \
  --mtime="@$EPOCH" --numeric-owner --owner=0 --group=0 -cf "$WORK/layer.tar" pause
gzip -9n <"$WORK/layer.tar" >"$WORK/layer.tar.gz"

sha() { sha256sum "$1" | cut -d' ' -f1; }
rm -rf "$OUT"; mkdir -p "$OUT/blobs/sha256"
add() { local d; d=$(sha "$1"); cp "$1" "$OUT/blobs/sha256/$d"; echo "$d"; }
layer=$(add "$WORK/layer.tar.gz")
jq -cj -n --arg c "$CREATED" --arg id "sha256:$(sha "$WORK/layer.tar")" '{
    created:$c, architecture:"amd64", os:"linux", config:{Entrypoint:["/pause"]},
    rootfs:{type:"layers", diff_ids:[$id]}}' >"$WORK/config.json"
config=$(add "$WORK/config.json")
jq -cj -n --arg c "sha256:$config" --argjson cs "$(stat -c %s "$WORK/config.json")" \
  --arg l "sha256:$layer" --argjson ls "$(stat -c %s "$WORK/layer.tar.gz")" '{
    schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
    config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$c, size:$cs},
    layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip", digest:$l, size:$ls}]}' >"$WORK/manifest.json"
manifest=$(add "$WORK/manifest.json")
jq -cj -n --arg d "sha256:$manifest" --argjson s "$(stat -c %s "$WORK/manifest.json")" '{
    schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
    manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$d, size:$s,
      platform:{architecture:"amd64", os:"linux"}, annotations:{"org.opencontainers.image.ref.name":"latest"}}]}' >"$OUT/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$OUT/oci-layout"
echo "sha256:$manifest" >"$OUT/digest"
