#!/usr/bin/env bash
# On the lent H200 after setup.sh and setup-carried.sh: the gate's wall time with and without the levers of
# issue 19 (xdist workers sharing the one GPU, eager engines, a compile cache kept between runs), the GPU goldens
# and the plain green check. One step per `run` call; logs and the lever lines (levers.txt) come back in $OUT.
#   bash tools/h200/levers.sh record|check|levers
# Every run names its compile cache: fresh-NAME empties /root/cache/NAME first (a cold start), NAME reuses it.
step=$1; shift
export PYTHONPATH=/root/site:$PWD HF_HUB_OFFLINE=1 EXAONE_COMPRESSION_HOME=/root/home VLLM_USE_FLASHINFER_SAMPLER=0 \
  PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
M=/root/home/models
XD=(-n 4 --gate-gpu-memory-utilization 0.15)  # four workers on one GPU: each engine takes 0.15 of it
gate_run() {  # gate_run GATE LABEL CACHE LIMIT_S [pytest args]
  local g=$1 label=$2 cache=$3 limit=$4 asked=$3; shift 4
  case $cache in fresh-*) cache=${cache#fresh-}; rm -rf "/root/cache/$cache";; esac
  local c=/root/cache/$cache s=$(date +%s.%N) rc
  env CUDA_VISIBLE_DEVICES=0 VLLM_CACHE_ROOT=$c/vllm TORCHINDUCTOR_CACHE_DIR=$c/inductor TRITON_CACHE_DIR=$c/triton \
    timeout "$limit" python3 -m pytest tests/gate/test_release_gate.py -m gpu --gate-models-dir=$M/$g \
    -p no:cacheprovider -q -rfE --durations=8 "$@" > "$OUT/$label.log" 2>&1
  rc=$?
  local wall; wall=$(python3 -c "import time;print(round(time.time()-$s,1))")
  echo "LEVER $label gate=$g cache=$asked rc=$rc wall_s=$wall args: $*" | tee -a "$OUT/levers.txt"
  grep -E "passed|failed|error" "$OUT/$label.log" | tail -2
  grep -E "^models loaded" "$OUT/$label.log" | tee -a "$OUT/levers.txt"
}
case $step in
one)  # one GATE LABEL CACHE LIMIT_S [pytest args]: a single run, e.g. sequential with --gate-variants; the
  # goldens and the run's reports (its JSON, runs and speed files: goldens_from_report.py, report merge) come back
  # (gzip: SmolLM2's runs file alone is 12.6 MB, and $OUT returns files of at most 16 MB)
  gate_run "$@"; tar -cf "$OUT/goldens.tar" golden/; tar -czf "$OUT/reports-$2.tgz" reports/gate 2>/dev/null
  grep -E "variant to ship|speedup|snapshot" "$OUT/$2.log" | tail -12
  ;;
record)  # cold: xdist x4 on a fresh compile cache, speed cases left out; goldens come back in goldens.tar.
  # 2026-12-01, H200: both gates HUNG this way (tiny: 27 passed, then 22 errors, then no progress until the
  # 330 s timeout; smollm2 likewise at 230 s; killed before pytest printed why). Sequential `one` runs worked.
  gate_run tiny-exaone4 record-tiny fresh-A "${LIMIT1:-330}" --snapshot-update -k "not test_speedup" "${XD[@]}" "$@"
  gate_run smollm2 record-smollm2 A "${LIMIT2:-230}" --snapshot-update -k "not test_speedup" "${XD[@]}" "$@"
  tar -cf "$OUT/goldens.tar" golden/
  ;;
check)  # the plain `pytest -m gpu` of each gate, speed included, on the cache the record step warmed
  gate_run tiny-exaone4 check-tiny A "${LIMIT1:-390}" "$@"
  gate_run smollm2 check-smollm2 A "${LIMIT2:-190}" "$@"
  mkdir -p "$OUT/reports"; cp reports/gate/*.json "$OUT/reports/" 2>/dev/null; (cd "$OUT" && tar -cf reports.tar reports && rm -r reports)
  ;;
levers)  # eager x4 (no compile, so no cache to warm), compiled x4 on the warm cache, the speed cases alone
  gate_run tiny-exaone4 eager-x4-tiny fresh-E "${LIMIT1:-200}" -k "not test_speedup" --gate-enforce-eager "${XD[@]}" "$@"
  gate_run tiny-exaone4 warm-x4-tiny A "${LIMIT2:-200}" -k "not test_speedup" "${XD[@]}" "$@"
  [ -n "$SPEED" ] && gate_run tiny-exaone4 warm-speed-tiny A "${LIMIT3:-200}" -k test_speedup "$@"
  ;;
esac
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
