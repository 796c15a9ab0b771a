#!/usr/bin/env bash
# Reruns the fuzz campaign over every parser of outside data (cargo-fuzz / libFuzzer), then
# minimises each target's corpus back into fuzz/corpus/<target> (committed; CI replays it
# through tests/tests/fuzz_corpora.rs).
#
#   fuzz/run_campaign.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 300 s per target, all targets. Needs `cargo install cargo-fuzz`; on the stable
# toolchain RUSTC_BOOTSTRAP=1 (set below) unlocks the nightly flags libFuzzer needs. Runs
# under `nice -n 10` with -rss_limit_mb=2048 and -timeout=10 (a hang or an allocation past
# 2 GiB is a finding). Crashes land in fuzz/artifacts/<target>/; copy a fixed one into
# fuzz/regressions/<target>/ so that CI keeps replaying it. Per-target figures
# (executions, coverage, corpus size) are appended to fuzz/campaign.log.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
SECS=${1:-300}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(fheprog eval_keys secret_key ciphertext onnx tensor_pb png)
fi

nice -n 10 cargo fuzz build -s none
BIN=target/x86_64-unknown-linux-gnu/release
# Seeds: valid files of every kind, built by the same code the replay test uses.
# (Without RUSTC_BOOTSTRAP: cargo fingerprints it, and the main workspace's build would be
# redone from scratch.)
(cd .. && env -u RUSTC_BOOTSTRAP nice -n 10 cargo run --quiet --release -p compiler \
  --example fuzz_seeds -- fuzz/seeds)

for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "corpus-work/$t" "artifacts/$t"
  log="artifacts/$t/run.log"
  touch "artifacts/$t/.start"
  set +e
  nice -n 10 "$BIN/$t" "corpus-work/$t" "corpus/$t" "seeds/$t" \
    -rss_limit_mb=2048 -timeout=10 -max_total_time="$SECS" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1) || true
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*') || true
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*') || true
  # Minimise: keep only inputs that add edge coverage (-use_counters=0: hit counts are
  # not features here, which halves the committed corpus), into a fresh corpus.
  rm -rf "corpus-new/$t" && mkdir -p "corpus-new/$t"
  nice -n 10 "$BIN/$t" -merge=1 -use_counters=0 -rss_limit_mb=2048 -timeout=10 \
    "corpus-new/$t" "corpus/$t" "corpus-work/$t" "seeds/$t" >>"$log" 2>&1
  rm -rf "corpus/$t" && mv "corpus-new/$t" "corpus/$t"
  n=$(ls "corpus/$t" | wc -l)
  size=$(du -sk "corpus/$t" | cut -f1)
  # Findings of this run only (older artifacts stay until their reproducer is filed).
  crashes=$(find "artifacts/$t" -newer "artifacts/$t/.start" -type f \
    -regex '.*/\(crash\|oom\|timeout\|leak\|slow-unit\)-.*' | wc -l)
  line="$(date -u +%FT%TZ) target=$t rc=$rc seconds=$SECS execs=${execs:-0} cov=${cov:-?} ft=${ft:-?} corpus_files=$n corpus_kib=$size findings=$crashes"
  echo "$line" | tee -a campaign.log
done
rmdir corpus-new 2>/dev/null || true
