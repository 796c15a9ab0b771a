#!/usr/bin/env bash
# Commits the training progress that lives in the work tree (so that it survives the
# machine): the per-epoch logs models/runs/*.log, the resumable checkpoint copies
# models/checkpoints/<run>/last.pt (train.py --resume uses them when ~/.cache has none),
# and finished state dicts models/weights/*.pt.  Commits only those paths (other
# people commit to the same repository); retries while another git command holds the index.
#   models/commit_progress.sh ["message"]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
msg="${1:-training progress: $(date -u '+%F %H:%M') UTC}"
for try in 1 2 3 4 5 6 7 8 9 10; do
  paths=()
  for p in models/runs models/checkpoints models/weights; do
    [ -n "$(find "$p" -type f 2>/dev/null | head -1)" ] && paths+=("$p")
  done
  if git add -- "${paths[@]}"; then
    if git diff --cached --quiet -- "${paths[@]}"; then echo "nothing to commit"; exit 0; fi
    if git commit -q -m "$msg" -- "${paths[@]}"; then git log --oneline -1; exit 0; fi
  fi
  sleep 3
done
echo "commit_progress: git kept failing" >&2
exit 1
