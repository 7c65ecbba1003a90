#!/usr/bin/env bash
# Wheels the H200 image may lack, for Python 3.12 x86_64: the test stack, the gate's report deps and gguf
# (SmolLM2's GGUF is converted on the device). Same pins as the eval-cpu env. Usage: fetch-extras.sh DEST
set -euo pipefail
dest=${1:?DEST}
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 --platform manylinux_2_34_x86_64 \
  --platform manylinux_2_39_x86_64 --platform any -d "$dest" \
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pytest-xdist==3.8.0 execnet==2.1.2 syrupy==7.0.2 \
  rapidfuzz==3.14.6 hypothesis==6.170.17 sortedcontainers==2.4.0 attrs==26.1.0 \
  matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1 pyparsing==3.3.3 \
  python-dateutil==4.0.0 six==1.17.0 pillow==13.0.0 gguf==0.19.0 pyyaml==6.0.4
ls "$dest" | wc -l
