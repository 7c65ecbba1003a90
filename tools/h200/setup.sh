#!/usr/bin/env bash
# On the lent H200, from the repo root, after the c1..c6 and b1..bN calls copied their pieces to
# /root/stage: install vLLM (shared/gpu/README.md), the missing test/report wheels, the tiny EXAONE-4 matrix,
# and make SmolLM2's base and compressed-l29 with this repo's own code (weights must match the CPU build's).
#   setup.sh [all|bundle|vllm]: `bundle` needs the b pieces and the whole wheels of c5 and c6 (not vLLM itself:
#   make-models and prune run on torch, but the CLI imports pydantic, and transformers' GGUF path pycountry), so
#   it can run in the background (tools/h200/bg.sh) while c1..c4 and the d pieces are still being carried over.
#   12-01, session 8: b1..b4, c6, c5 first; make-models + build then ended within ~90 s, in the background.
set -eo pipefail
part=${1:-all}
R=$PWD
cd /root/stage
if [ "$part" != bundle ] && [ ! -d /root/site/vllm ]; then
  for p in *.whl.part00; do b=${p%.part00}; cat "$b".part?? > "$b" && rm "$b".part??; done
  sha256sum -c --quiet SHA256SUMS
  python3 -m pip install -q --no-index --no-deps --no-compile --target /root/site /root/stage/*.whl
  echo "[setup: $SECONDS s] vLLM installed"
fi
[ "$part" = vllm ] && exit 0
if [ "$part" = bundle ]; then  # vLLM's own dependencies that arrived whole (c5, c6): the CLI needs some of them
  ls /root/stage/*.whl > /dev/null && python3 -m pip install -q --no-index --no-deps --no-compile --target /root/site \
    /root/stage/*.whl 2>&1 | grep -v "already exists" || true
fi
if [ ! -d /root/b/bundle ]; then  # a rerun (after a missing wheel, say) starts from the extracted bundle
  ls bundle.tar.part00 >/dev/null && cat bundle.tar.part?? > bundle.tar && rm bundle.tar.part?? && sha256sum -c --quiet BUNDLE.SHA256
  mkdir -p /root/b && tar -C /root/b -xf bundle.tar && rm bundle.tar
fi
cd "$R"
python3 tools/h200/install_missing.py /root/b/bundle/extras /root/site
export PYTHONPATH=/root/site:/root/b/bundle HF_HUB_OFFLINE=1 EXAONE_COMPRESSION_HOME=/root/home
mkdir -p /root/home/models /root/home/bench && tar -C /root/home/models -xf /root/b/bundle/tiny-exaone4.tar
# the bench's tokenizer: only bundles packed with it (the one of 12-01 10:10 lacks it; the gate does not need it)
[ -d /root/b/bundle/tokenizer-v102400 ] && cp -r /root/b/bundle/tokenizer-v102400 /root/home/bench/ && touch /root/home/bench/tokenizer-v102400.lock
python3 -m compress make-models --only smollm2
echo "[setup: $SECONDS s] SmolLM2 made"
python3 -m compress build smollm2 --profile quick --variants base,compressed-l29
echo "[setup: $SECONDS s] SmolLM2 compressed-l29 built"
python3 - <<'PY'
import json
for v in ("base", "compressed-l29"):
    m = json.load(open(f"/root/home/models/smollm2/{v}/manifest.json"))
    print("smollm2", v, "weights", m["weights_sha256"][:12], "(CPU build: e9aca7adceac / 17146d86de8a)")
import torch, transformers, pytest, syrupy, rapidfuzz
print("torch", torch.__version__, "transformers", transformers.__version__,
      "pytest", pytest.__version__, "gpu", torch.cuda.get_device_name(0), "x", torch.cuda.device_count())
PY
