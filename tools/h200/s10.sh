#!/usr/bin/env bash
# On the lent H200, session 10 of issue 19: one short command per `run` call, so that calls go back to back (the
# machine is given back ~30 s after a call returns). The gate runs from /root/wt, a copy of a call's checkout
# made once (`wt`), so that goldens one run writes are there for the next (each call gets a fresh checkout).
#   s10.sh piece DIR...                         copy carried .stage pieces where setup*.sh look for them
#   s10.sh wt                                   /root/wt := this call's checkout (without .stage)
#   s10.sh bg NAME GATE LABEL CACHE LIMIT [pytest args]   `levers.sh one` in the background from /root/wt
#   s10.sh poll NAME SECS                       wait up to SECS for it, then bring /root/res/NAME back in $OUT
# Staging, one `run` call each, back to back (~230 s of device time; the pieces are built here by
# shared/gpu/fetch-vllm-wheels.sh, tools/h200/pack.sh, pack-tiny.sh and pack-carried.sh into .stage/):
#   b1, b2, b3; b4 + gpu19-t1; c6; c5 + `bash tools/h200/bg.sh start bundle bash tools/h200/setup.sh bundle`;
#   c1, c2, c3; c4 + `bash tools/h200/setup.sh vllm && bash tools/h200/bg.sh wait bundle &&
#   bash tools/h200/setup-tiny.sh && bash tools/h200/s10.sh wt`; d1 ... d6 (`s10.sh piece dK`), the last one
#   with `bash tools/h200/setup-carried.sh`. Each piece call: `bash tools/h200/s10.sh piece PIECE`.
# Then the runs of README "On a GPU" (session 10), e.g. the cold tiny gate:
#   s10.sh bg r1 tiny-exaone4 r1-tiny-cold fresh-A 540 -n 4 --gate-gpu-memory-utilization 0.15 --snapshot-update
#   s10.sh poll r1 500
set -u
case $1 in
piece|poll)  # as in session 9
  exec bash tools/h200/s9.sh "$@"
  ;;
wt)
  rm -rf /root/wt && mkdir -p /root/wt && tar --exclude=./.stage -cf - . | tar -C /root/wt -xf -
  echo "wt: $(cd /root/wt && git log --oneline -1 2>/dev/null)"
  ;;
bg)
  exec bash tools/h200/s9.sh bg "$2" wt "${@:3}"
  ;;
esac
