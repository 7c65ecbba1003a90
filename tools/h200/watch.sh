#!/usr/bin/env bash
# On the lent H200: run CMD in its own process group; at each of the given seconds, while it still runs, write
# what every process is doing to DIR/stacks-<s>.txt (ps tree, nvidia-smi, `py-spy dump` of each python process:
# the pytest workers and vLLM's engine-core processes), so that a gate that hangs says where. When CMD ends, what
# is left of its group (an engine-core process that outlived its pytest worker) is killed by the group's id.
#   watch.sh DIR "100 150" CMD [ARGS]     (PYSPY: the py-spy binary, default /root/pyspy/bin/py-spy)
dir=$1 at=$2; shift 2; mkdir -p "$dir"
spy=${PYSPY:-/root/pyspy/bin/py-spy}
setsid -w "$@" & pid=$!
start=$SECONDS
for t in $at; do
  while [ $((SECONDS - start)) -lt "$t" ] && kill -0 $pid 2>/dev/null; do sleep 1; done
  kill -0 $pid 2>/dev/null || break
  {
    echo "== $t s after start"; ps -eo pid,ppid,pgid,etimes,stat,rss,args --forest | grep -v ' \[' | cut -c1-220
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv
    for p in $(ps -eo pid=,comm= | awk '$2 ~ /python|pytest|VLLM|EngineCore/ {print $1}'); do
      echo "---- $p: $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | cut -c1-200)"
      timeout 20 "$spy" dump --pid "$p" 2>&1 | head -60
    done
  } > "$dir/stacks-$t.txt" 2>&1
  echo "watch: stacks at $t s -> $dir/stacks-$t.txt"
  if [ "$t" = "${at##* }" ] && [ -n "${ABORT_ENGINES:-}" ]; then  # the last look: engine cores still there get
    # SIGABRT, so that (with PYTHONFAULTHANDLER=1) each prints its threads' stacks into its test's captured stderr
    for p in $(ps -eo pid=,pgid=,comm= | awk -v g=$pid '$2 == g && $3 ~ /VLLM|EngineCore/ {print $1}'); do
      echo "watch: SIGABRT to engine core $p"; kill -ABRT "$p"
    done
  fi
done
wait $pid; rc=$?
kill -KILL -- -$pid 2>/dev/null && echo "watch: killed what was left of process group $pid"
sleep 2; nvidia-smi --query-gpu=memory.used --format=csv,noheader
exit $rc
