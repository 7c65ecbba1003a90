#!/usr/bin/env bash
# On the lent H200 after setup.sh: one step per `run` call. Logs and results go to $OUT (8 files at most).
#   bash tools/h200/steps.sh record GATE|check GATE|xdist|tp2|speed|bench|overhead [extra args]
step=$1; shift
export PYTHONPATH=/root/site:$PWD HF_HUB_OFFLINE=1 EXAONE_COMPRESSION_HOME=/root/home VLLM_USE_FLASHINFER_SAMPLER=0 \
  PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
M=/root/home/models
t() { local s=$(date +%s); "$@"; local rc=$?; echo "[$(( $(date +%s) - s )) s, rc $rc] ${*:1:8}"; return $rc; }
gate() {  # gate NAME LOG [pytest args]: the README's GPU command on one models folder
  local name=$1 log=$2; shift 2
  t python3 -m pytest tests/gate/test_release_gate.py -m gpu --gate-models-dir=$M/$name -p no:cacheprovider -q -rfE \
    --durations=5 "$@" > $OUT/$log 2>&1
  tail -12 $OUT/$log | grep -v "^$"
}
speed_gate() {  # speed_gate BATCH LOG [pytest args]: the gate's speed cases alone on /root/speed (issue 8)
  local batch=$1 log=$2; shift 2
  t python3 -m pytest tests/gate/test_release_gate.py -m gpu -k test_speedup --gate-models-dir=/root/speed \
    --gate-dtype bfloat16 --gate-thresholds tests/gate/thresholds.toml --gate-speed-batch $batch \
    -p no:cacheprovider -q -rfE "$@" > $log 2>&1
}
case $step in
record)
  # steps.sh record GATE [args]: write GPU goldens and bring them back at once: every `run` call gets a fresh
  # copy of the working tree, so files written under golden/ are gone by the next call.
  g=$1; shift
  gate $g record-$g.log --snapshot-update -k "not test_speedup" "$@"
  git status --short --untracked-files=all golden/
  files=$(git status --short --untracked-files=all golden/ | awk '{print $2}')
  [ -n "$files" ] && tar -cf $OUT/goldens-$g.tar $files
  ;;
check)
  # steps.sh check GATE [args]: the plain gate, speed included: the run a GPU runner makes. The report comes
  # back; tools/h200/goldens_from_report.py turns it into goldens if some were missing.
  g=$1; shift
  gate $g check-$g.log "$@"
  cp reports/gate/$g.json reports/gate/$g-speed.json $OUT/ 2>/dev/null
  ;;
xdist)
  # two GPUs: one worker per GPU, each variant loaded once (the summary's `models loaded:` line)
  gate tiny-exaone4 gate-n2.log -n 2 "$@"
  ;;
tp2)
  gate tiny-exaone4 gate-tp2.log --gate-variants compressed-l29 --gate-tensor-parallel-size 2 "$@"
  ;;
speed)
  # Issue 8: same model twice (good), 1.3x the layers (slow) and 2x (slow2x) vs base, ${SPEED_BATCHES:-10 256}
  # sequences a round (pass --gate-repeats 80); blocks.py gives the verdicts of disjoint 8-round blocks (one gate
  # run's each).
  [ -d /root/speed/slow2x ] || t python3 tools/h200/make_speed_models.py /root/speed > $OUT/make-speed.log 2>&1
  tail -3 $OUT/make-speed.log
  for batch in ${SPEED_BATCHES:-10 256}; do
    speed_gate $batch $OUT/speed-b$batch.log "$@"
    tail -6 $OUT/speed-b$batch.log | grep -v "^$"; cp reports/gate/speed-speed.json $OUT/speed-b$batch.json
    python3 tools/h200/blocks.py reports/gate/speed-speed.json tests/gate/thresholds.toml speed 8
  done
  ;;
reruns)
  # Issue 8: whole gate reruns (fresh pytest, fresh engines, the default 8 rounds) at batch $1, up to $2 of
  # them, none started after $3 seconds; every rerun's speed file comes back in reruns-b$1.tar.
  batch=$1 n=$2 budget=$3; shift 3; mkdir -p /root/reruns
  for i in $(seq 1 $n); do
    [ $SECONDS -gt $budget ] && break
    speed_gate $batch /root/reruns/b$batch-$i.log "$@"
    grep -E "passed|failed" /root/reruns/b$batch-$i.log | tail -1
    cp reports/gate/speed-speed.json /root/reruns/b$batch-$i.json
    python3 tools/h200/blocks.py /root/reruns/b$batch-$i.json tests/gate/thresholds.toml speed 8
    tar -C /root/reruns -cf $OUT/reruns-b$batch.tar .
  done
  ;;
bench)
  t python3 -m compress bench "$@" > $OUT/bench.log 2>&1; tail -40 $OUT/bench.log
  ;;
overhead)
  # the logs folder (bench overhead --logs) comes back as one tar: $OUT returns 8 files at most
  t python3 -m compress bench overhead --logs /root/ovlogs "$@" > $OUT/overhead.log 2>&1; tail -30 $OUT/overhead.log
  tar -C /root/ovlogs -cf $OUT/ovlogs.tar .
  ;;
esac
