#!/usr/bin/env bash
# Here (CPU host): the tiny EXAONE-4 folders whose weights changed since the bundle (pack.sh) was packed, as
# one small piece .stage/t1 to lay over the bundle's matrix on the device (tools/h200/setup-tiny.sh): the
# named variants' whole folders, every variant's manifest.json (the gate's goldens record it as provenance),
# and TINY-SHA256SUMS of every file of this home's matrix, so that the device gates exactly these folders.
# Usage: EXAONE_COMPRESSION_HOME=... pack-tiny.sh VARIANT... (e.g. base-distilled base-distilled-llmc-awq)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
home=${EXAONE_COMPRESSION_HOME:-$root/.cache}
cd "$home/models"
rm -rf "$root/.stage/t1" && mkdir -p "$root/.stage/t1"
tar --exclude='*.lock' --exclude='.*' -cf "$root/.stage/t1/tiny-overlay.tar" \
  $(for v in "$@"; do echo "tiny-exaone4/$v"; done) \
  $(ls tiny-exaone4/*/manifest.json | grep -v -F -f <(for v in "$@"; do echo "tiny-exaone4/$v/"; done))
find tiny-exaone4 -type f ! -name '*.lock' ! -name '.*' -print0 | sort -z | xargs -0 sha256sum \
  > "$root/.stage/t1/TINY-SHA256SUMS"
du -sh "$root/.stage/t1"; wc -l < "$root/.stage/t1/TINY-SHA256SUMS"
