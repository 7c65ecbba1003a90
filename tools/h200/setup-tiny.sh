#!/usr/bin/env bash
# On the lent H200, after setup.sh (bundle) extracted the tiny EXAONE-4 matrix and a call copied .stage/t1 to
# /root/stage-t: lay pack-tiny.sh's overlay over it (the stale folders and manifests removed first: the bundle's
# tar may hard-link a stale file to a current one) and check every file against the CPU host's sha256 list.
set -eo pipefail
cd /root/home/models
tar -tf /root/stage-t/tiny-overlay.tar | grep -v '/$' | xargs rm -f
tar -xf /root/stage-t/tiny-overlay.tar
sha256sum -c --quiet /root/stage-t/TINY-SHA256SUMS
extra=$(comm -13 <(awk '{print $2}' /root/stage-t/TINY-SHA256SUMS | sort) <(find tiny-exaone4 -type f | sort))
[ -z "$extra" ] || { echo "tiny-exaone4: files the CPU host's matrix lacks: $extra"; exit 1; }
echo "tiny-exaone4: $(wc -l < /root/stage-t/TINY-SHA256SUMS) files, all equal to the CPU host's"
python3 - <<'PY'
import json, pathlib
for d in sorted(pathlib.Path("/root/home/models/tiny-exaone4").iterdir()):
    print("tiny-exaone4", d.name, "weights", json.loads((d / "manifest.json").read_text())["weights_sha256"][:12])
PY
