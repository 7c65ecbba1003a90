#!/usr/bin/env bash
# On the lent H200, session 9 of issue 19 (helper gpu20): one short command per `run` call, so that calls go back
# to back (the machine is given back after ~30 s idle). Code runs from /root/wt (this branch, carried as
# .stage/gpu20-wt) or, for the old code, /root/mainwt (the call's checkout of main, copied once).
#   s9.sh piece DIR...       copy carried .stage pieces where setup.sh / setup-tiny.sh look for them
#   s9.sh bg NAME WT ARGS    `levers.sh one ARGS` in the background from WT (wt|mainwt), logs in /root/res/NAME
#   s9.sh poll NAME SECS     wait up to SECS for it, then bring /root/res/NAME back in $OUT
#   s9.sh watch NAME WT AT ARGS   the same in the foreground under watch.sh (stacks at AT seconds)
set -u
case $1 in
piece)
  shift
  for d; do
    case $d in
      gpu19-t1) mkdir -p /root/stage-t && cp .stage/gpu19-t1/* /root/stage-t/ ;;
      d[0-9]*) mkdir -p /root/stage-d && cp .stage/$d/* /root/stage-d/ ;;  # setup-carried.sh reads them there
      gpu20-wt) rm -rf /root/wt && cp -a .stage/gpu20-wt /root/wt ;;
      gpu20-x) python3 -m pip install -q --no-index --no-deps --target /root/pyspy .stage/gpu20-x/*.whl ;;
      *) mkdir -p /root/stage && cp .stage/$d/* /root/stage/ ;;
    esac
  done
  echo "pieces in: $*; /root/stage $(du -sh /root/stage 2>/dev/null | cut -f1)"
  ;;
mainwt)
  [ -d /root/mainwt ] || { mkdir -p /root/mainwt && tar --exclude=./.stage -cf - . | tar -C /root/mainwt -xf -; }
  ;;
bg)
  name=$2 wt=$3; shift 3; mkdir -p /root/res/$name
  cd /root/$wt && OUT=/root/res/$name bash /root/wt/tools/h200/bg.sh start $name bash tools/h200/levers.sh one "$@"
  ;;
poll)
  name=$2 secs=$3
  timeout "$secs" bash /root/wt/tools/h200/bg.sh wait "$name"; rc=$?
  [ $rc = 124 ] && { echo "$name still running"; tail -c 600 /root/res/$name/*.log; }
  cp -r /root/res/$name "$OUT/" 2>/dev/null; cp /root/bg/$name.log "$OUT/$name/bg.log" 2>/dev/null
  cat /root/res/$name/levers.txt 2>/dev/null
  nvidia-smi --query-gpu=memory.used --format=csv,noheader
  ;;
watch)
  name=$2 wt=$3 at=$4; shift 4; mkdir -p "$OUT/$name"
  cd /root/$wt && OUT=$OUT/$name bash /root/wt/tools/h200/watch.sh "$OUT/$name" "$at" bash tools/h200/levers.sh one "$@"
  ;;
esac
