#!/usr/bin/env bash
# Shows the state of the planned training runs (see train_all.sh): whether train_all.sh
# is running, and the last logged epoch of every run under $CKPT_ROOT.
CKPT_ROOT="${CKPT_ROOT:-$HOME/.cache/fhec/train}"
if pgrep -f "models/train_all.sh" >/dev/null; then
  echo "train_all.sh running: pids $(pgrep -f 'models/train_all.sh' | tr '\n' ' ')"
else
  echo "train_all.sh not running (resume: setsid nohup nice -n 5 models/train_all.sh >> $CKPT_ROOT/train_all.log 2>&1 &)"
fi
for d in "$CKPT_ROOT"/*/; do
  [ -f "$d/train.log" ] || continue
  name="$(basename "$d")"
  last="$(grep '^epoch' "$d/train.log" | tail -1 | cut -c1-60)"
  acc="$(grep '^epoch' "$d/train.log" | tail -1 | grep -o 'test_acc [0-9.]*')"
  mp="$(grep '^epoch' "$d/train.log" | tail -1 | grep -o ' max_pre [^ ]*')"
  fin=""; [ -f "$d/final.pt" ] && fin=" FINISHED"
  echo "$name: ${last%% lr*} $acc$mp$fin"
done
