#!/usr/bin/env bash
# After a training run has finished (its state dict is in models/weights/<name>.pt):
# evaluate it on the full test set (top-1 unclamped, activation-input range statistics,
# saved to models/runs/<name>.eval.txt), export it to ONNX with both exporters
# (models/onnx/<name>.onnx, <name>_dynamo.onnx) and commit those files (only those paths).
#   models/finish_run.sh 32 resnet32_quad
#   models/finish_run.sh 20 resnet20_quad_seed1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
depth="$1"; name="$2"
py=models/.venv/bin/python
w="models/weights/$name.pt"
[ -f "$w" ] || { echo "no $w (run not finished?)" >&2; exit 1; }
nice -n 5 "$py" models/evaluate.py --depth "$depth" --act quad --weights "$w" --threads 1 \
  | tee "models/runs/$name.eval.txt"
files=("$w" "models/runs/$name.eval.txt")
msg="$name: trained weights and full test-set evaluation"
if [[ "$name" != *nopen* ]]; then   # export.py skips the no-penalty ablation
  nice -n 5 "$py" models/export.py --only "$name" 2>&1 | grep -v '^W[0-9]' | grep -iv warn || true
  files+=("models/onnx/$name.onnx" "models/onnx/${name}_dynamo.onnx")
  msg="$msg, ONNX (both exporters)"
fi
for try in 1 2 3 4 5 6 7 8 9 10; do
  git add -- "${files[@]}" && git commit -q -m "$msg" -- "${files[@]}" && { git log --oneline -1; exit 0; }
  sleep 3
done
exit 1
