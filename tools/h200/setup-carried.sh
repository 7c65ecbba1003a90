#!/usr/bin/env bash
# On the lent H200, after tools/h200/setup.sh, once the d1..dN calls copied their pieces to /root/stage-d
# (`mkdir -p /root/stage-d && cp .stage/dK/* /root/stage-d/`): reassemble the SmolLM2 variants packed by
# pack-carried.sh into /root/home/models/smollm2/ and print their weights sha (must equal the CPU build's).
set -eo pipefail
cd /root/stage-d
cat smollm2-carried.tar.xz.part?? > smollm2-carried.tar.xz && rm smollm2-carried.tar.xz.part??
sha256sum -c --quiet d-SHA256SUMS
mkdir -p /root/home/models && tar -C /root/home/models -xJf smollm2-carried.tar.xz && rm smollm2-carried.tar.xz
python3 - <<'PY'
import json, pathlib
for d in sorted(pathlib.Path("/root/home/models/smollm2").iterdir()):
    if (d / "manifest.json").is_file():
        print("smollm2", d.name, "weights", json.loads((d / "manifest.json").read_text()).get("weights_sha256", "")[:12])
PY
