#!/usr/bin/env bash
# On the lent H200: a step in its own process session, so that it outlives the `run` call that started it (the
# device ends a call's other processes when it returns; one in a new session runs on until the machine goes
# back), e.g. `setup.sh bundle` while the next calls still carry pieces over. A later call waits for it.
#   bg.sh start NAME CMD [ARGS]   run CMD in the background; log /root/bg/NAME.log, exit code /root/bg/NAME.rc
#   bg.sh wait NAME...            block until each has finished; print its exit code and the end of its log
set -u
mkdir -p /root/bg
case $1 in
start)
  name=$2; shift 2; rm -f "/root/bg/$name.rc"
  setsid nohup bash -c '"$@" > "/root/bg/$0.log" 2>&1; echo $? > "/root/bg/$0.rc"' "$name" "$@" \
    > /dev/null 2>&1 < /dev/null &
  echo "bg $name started: $*"
  ;;
wait)
  shift; rc=0
  for name; do
    while [ ! -f "/root/bg/$name.rc" ]; do sleep 1; done
    echo "bg $name rc=$(cat "/root/bg/$name.rc")"; tail -n 8 "/root/bg/$name.log"
    [ "$(cat "/root/bg/$name.rc")" = 0 ] || rc=1
  done
  exit $rc
  ;;
esac
