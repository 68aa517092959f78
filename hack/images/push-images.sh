#!/usr/bin/env bash
# Push every OCI layout under OUT_DIR (as built by build-images.sh) to a plain-HTTP registry
# as HOST:PORT/test/NAME:latest, and check the registry kept the exact manifest digest
# (media types and the zstd layer are byte-preserved by skopeo's OCI->registry copy).
# Usage: hack/images/push-images.sh OUT_DIR HOST:PORT [--creds USER:PASS]
set -euo pipefail
[[ $# -eq 2 || ($# -eq 4 && $3 == --creds) ]] || { echo "usage: $0 OUT_DIR HOST:PORT [--creds USER:PASS]" >&2; exit 2; }
OUT=$1 REG=$2
creds=(); [[ $# -eq 4 ]] && creds=(--dest-creds "$4")
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
found=0
for layout in "$OUT"/*/oci-layout; do
  [[ -e $layout ]] || continue
  dir=$(dirname "$layout"); name=$(basename "$dir"); found=1
  skopeo copy -q --dest-tls-verify=false --preserve-digests "${creds[@]}" --digestfile "$tmp" \
    "oci:$dir:latest" "docker://$REG/test/$name:latest"
  # A converted manifest (e.g. another skopeo turning OCI into Docker v2s2) would break tests that pin digests.
  if [[ -f $dir/digest && $(cat "$tmp") != $(cat "$dir/digest") ]]; then
    echo "$name: registry digest $(cat "$tmp") != built $(cat "$dir/digest")" >&2; exit 1
  fi
done
[[ $found -eq 1 ]] || { echo "no OCI layouts under $OUT" >&2; exit 1; }
