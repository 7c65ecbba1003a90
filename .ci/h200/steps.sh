#!/usr/bin/env bash
# On the lent H200 after setup.sh: one step per `run` call. Logs and results go to $OUT.
#   bash .ci/h200/steps.sh gate|speed|bench|overhead [extra pytest args]
step=$1; shift
export PYTHONPATH=/root/site HF_HUB_OFFLINE=1 EXAONE_COMPRESSION_HOME=/root/home VLLM_USE_FLASHINFER_SAMPLER=0 \
  PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
M=/root/home/models
ngpu=$(nvidia-smi -L | wc -l)
xd=""; [ "$ngpu" -gt 1 ] && xd="-n $ngpu"
t() { local s=$(date +%s); "$@"; local rc=$?; echo "[$(( $(date +%s) - s )) s, rc $rc] $*"; return $rc; }
case $step in
gate)
  # SmolLM2 (float32 goldens recorded on the CPU: a plain run), then the tiny EXAONE-4 folders carried here;
  # 4-bit folders run in bf16 on CUDA, so their goldens (vllm-bfloat16) are recorded here (--snapshot-update).
  t python3 -m pytest tests/gate/test_release_gate.py -m gpu --models-dir=$M/smollm2 --variants compressed-l29 $xd -p no:cacheprovider -q -rfE "$@" \
    > $OUT/gate-smollm2.log 2>&1; tail -6 $OUT/gate-smollm2.log
  cp reports/gate/smollm2.json reports/gate/smollm2-speed.json $OUT/ 2>/dev/null
  t python3 -m pytest tests/gate/test_release_gate.py -m gpu --models-dir=$M/tiny-exaone4 $xd -p no:cacheprovider -q -rfE --snapshot-update "$@" \
    > $OUT/gate-tiny.log 2>&1; tail -6 $OUT/gate-tiny.log
  git status --short golden/; git diff --stat golden/; cp golden/tiny-exaone4/*bfloat16* $OUT/ 2>/dev/null
  cp reports/gate/tiny-exaone4.json $OUT/ 2>/dev/null
  ;;
tp2)
  t python3 -m pytest tests/gate/test_release_gate.py -m gpu --models-dir=$M/tiny-exaone4 --variants compressed-l29 --tensor-parallel-size 2 \
    -p no:cacheprovider -q -rfE "$@" > $OUT/gate-tp2.log 2>&1; tail -8 $OUT/gate-tp2.log
  ;;
speed)
  [ -d /root/speed/base ] || t python3 .ci/h200/make_speed_models.py /root/speed > $OUT/make-speed.log 2>&1
  tail -3 $OUT/make-speed.log
  t python3 -m pytest tests/gate/test_release_gate.py -m gpu -k test_speedup --models-dir=/root/speed --gate-dtype bfloat16 \
    --gate-thresholds .ci/h200/speed-thresholds.toml $xd -p no:cacheprovider -q -rfE "$@" > $OUT/speed.log 2>&1
  tail -12 $OUT/speed.log; cp reports/gate/speed-speed.json $OUT/ 2>/dev/null
  python3 .ci/h200/blocks.py reports/gate/speed-speed.json .ci/h200/speed-thresholds.toml speed 8
  ;;
bench)
  t python3 -m compress bench "$@" > $OUT/bench.log 2>&1; tail -40 $OUT/bench.log
  ;;
overhead)
  t python3 -m compress bench overhead "$@" > $OUT/overhead.log 2>&1; tail -30 $OUT/overhead.log
  ;;
esac
