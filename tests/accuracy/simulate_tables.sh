#!/bin/bash
# Encrypted accuracy (simulated) of one model on the full CIFAR-10 test set, unclustered
# and clustered, for docs/ACCURACY.md. Sequential, resumable (rerun the same line after an
# interruption: every configuration continues from its --out file).
#
#   tests/accuracy/simulate_tables.sh models/onnx/resnet20_quad.onnx r20
#   tests/accuracy/simulate_tables.sh models/onnx/resnet32_quad.onnx r32
#
# Needs the test set (`models/setup.sh --data`) and `cargo build --release -p compiler`.
# Writes ~/.cache/fhec/sim/<name>_<config>.{fheprog,jsonl,summary.json}; one summary line
# per configuration on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?usage: $0 MODEL.onnx NAME}
name=${2:?usage: $0 MODEL.onnx NAME}
fhec=${FHEC:-target/release/fhec}
dir=${SIM_DIR:-$HOME/.cache/fhec/sim}
# The reference layout's programs (the tables compare clustering; the simulator restricts
# them to the live slots, ~40x faster than a packed program, whose one ciphertext per
# tensor is live everywhere). LAYOUT=packed simulates the packed programs instead.
layout=${LAYOUT:-reference}
mkdir -p "$dir"
for cfg in ${CONFIGS:-none slice:8 slice:16 slice:32 slice:64 slice:1024 full:16 full:64}; do
  base=$dir/${name}_${cfg/:/}
  if [ ! -f "$base.fheprog" ]; then
    if [ "$cfg" = none ]; then
      nice -n 10 "$fhec" compile "$model" --layout "$layout" -o "$base.fheprog" 2> "$base.compile.log"
    else
      nice -n 10 "$fhec" compile "$model" --layout "$layout" --cluster "$cfg" -o "$base.fheprog" 2> "$base.compile.log"
    fi
  fi
  nice -n 10 "$fhec" simulate "$base.fheprog" --cifar10-test --seed 0 \
    --out "$base.jsonl" --resume --json > "$base.summary.json" 2> "$base.sim.log"
  echo "$cfg: $(grep -oE '"(sim_top1_pct|exact_top1_pct|agreement_pct|worst_bits|median_bits|wrapped)": [^,]*' "$base.summary.json" | tr '\n' ' ')"
done
