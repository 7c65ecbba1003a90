#!/usr/bin/env bash
# Here (CPU host): pack the SmolLM2 variants the H200 must not rebuild (distillation and AWQ ran on the CPU;
# the GPU would give other weights) into pieces a `run` call may carry: .stage/d1, d2, ... and
# .stage/d-SHA256SUMS inside the last piece. xz -1 halves them (the float32 distilled weights compress well):
# 645 MB -> 300 MB. The first piece is FIRST_MIB (default 44) so that it fits in one call beside the bundle's
# small last piece (b4: 16 MiB); the others are 58 MiB. On the device: tools/h200/setup-carried.sh.
# Usage: pack-carried.sh [VARIANT ...] (default: compressed-l29-distilled base-llmc-awq)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
home=${EXAONE_COMPRESSION_HOME:-$root/.cache}
variants=${*:-compressed-l29-distilled base-llmc-awq}
first=${FIRST_MIB:-44}
work=$(mktemp -d)
name=smollm2-carried.tar.xz
tar -C "$home/models" --exclude='*.lock' -cf - $(for v in $variants; do echo "smollm2/$v"; done) \
  | xz -1 -T2 > "$work/$name"
(cd "$work" && sha256sum "$name") > "$work/d-SHA256SUMS"
rm -rf "$root"/.stage/d[0-9]*
head -c $((first * 1048576)) "$work/$name" > "$work/$name.part00"
tail -c +$((first * 1048576 + 1)) "$work/$name" | split -b 58M -d --numeric-suffixes=1 - "$work/$name.part"
n=0
for piece in "$work/$name".part*; do
  n=$((n + 1)); mkdir -p "$root/.stage/d$n"; mv "$piece" "$root/.stage/d$n/"
done
mv "$work/d-SHA256SUMS" "$root/.stage/d$n/"
du -sh "$root"/.stage/d*; rm -rf "$work"
