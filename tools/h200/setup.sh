#!/usr/bin/env bash
# On the lent H200, from the repo root, after the c1..c6 and b1..bN calls copied their pieces to
# /root/stage: install vLLM (shared/gpu/README.md), the missing test/report wheels, the tiny EXAONE-4 matrix,
# and make SmolLM2's base and compressed-l29 with this repo's own code (weights must match the CPU build's).
set -eo pipefail
R=$PWD
cd /root/stage
ls bundle.tar.part00 >/dev/null && cat bundle.tar.part?? > bundle.tar && rm bundle.tar.part?? && sha256sum -c --quiet BUNDLE.SHA256
if [ ! -d /root/site/vllm ]; then
  for p in *.part00; do b=${p%.part00}; cat "$b".part?? > "$b" && rm "$b".part??; done
  sha256sum -c --quiet SHA256SUMS
  python3 -m pip install -q --no-index --no-deps --no-compile --target /root/site /root/stage/*.whl
fi
mkdir -p /root/b && tar -C /root/b -xf bundle.tar && rm bundle.tar
cd "$R"
python3 tools/h200/install_missing.py /root/b/bundle/extras /root/site
export PYTHONPATH=/root/site:/root/b/bundle HF_HUB_OFFLINE=1 EXAONE_COMPRESSION_HOME=/root/home
mkdir -p /root/home/models /root/home/bench && tar -C /root/home/models -xf /root/b/bundle/tiny-exaone4.tar
cp -r /root/b/bundle/tokenizer-v102400 /root/home/bench/ && touch /root/home/bench/tokenizer-v102400.lock
python3 -m compress make-models --only smollm2
echo "[setup: $SECONDS s] SmolLM2 made"
python3 -m compress build smollm2 --profile quick --variants base,compressed-l29
echo "[setup: $SECONDS s] SmolLM2 compressed-l29 built"
python3 - <<'PY'
import json
m = json.load(open("/root/home/models/smollm2/compressed-l29/manifest.json"))
print("smollm2 compressed-l29 weights", m["weights_sha256"][:12], "(CPU build: 17146d86de8a)")
import vllm, torch, transformers, pytest, syrupy, rapidfuzz
print("vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__,
      "pytest", pytest.__version__, "gpu", torch.cuda.get_device_name(0), "x", torch.cuda.device_count())
PY
