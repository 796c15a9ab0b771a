#!/usr/bin/env bash
# Load test of `fhec eval` (issue 9): compiles a small committed model with its 128-bit
# parameters, makes keys and one encrypted input, then runs `fhec eval` RUNS times (50 by
# default) on the same files. Per run it records the peak RSS (/usr/bin/time -v), the
# wall time and the SHA-256 of the output ciphertext; at the end it checks that every
# output is byte-identical (evaluation is deterministic) and prints min / median / max of
# time and RSS and the RSS growth from the first to the last run.
#
#   tests/load/eval_50.sh [MODEL.onnx] [INPUT.pb] [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:-$root/tests/data/tiny_lola.onnx}
input=${2:-$root/tests/data/tiny_lola_input.pb}
runs=${3:-50}
fhec=$root/target/release/fhec
[ -x "$fhec" ] || (cd "$root" && nice -n 10 cargo build --release -p compiler --bin fhec)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fhec" compile "$model" -o "$work/p.fheprog" >/dev/null 2>&1
"$fhec" keygen "$work/p.fheprog" --secret "$work/c.sk" --eval "$work/s.evk" 2>/dev/null
"$fhec" encrypt "$work/p.fheprog" --secret "$work/c.sk" --input "$input" -o "$work/x.ct" 2>/dev/null
echo "run,wall_s,peak_rss_kib,sha256"
for i in $(seq 1 "$runs"); do
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time.txt" "$fhec" eval "$work/p.fheprog" --eval "$work/s.evk" \
    --input "$work/x.ct" -o "$work/out.ct" 2>/dev/null
  t1=$(date +%s.%N)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  wall=$(python3 -c "print(f'{$t1 - $t0:.4f}')")
  sum=$(sha256sum "$work/out.ct" | cut -c1-16)
  echo "$i,$wall,$rss,$sum"
done | tee "$work/runs.csv"
python3 - "$work/runs.csv" <<'PY'
import sys, statistics
rows = [l.strip().split(",") for l in open(sys.argv[1]) if l[0].isdigit()]
wall = [float(r[1]) for r in rows]
rss = [int(r[2]) for r in rows]
sums = {r[3] for r in rows}
print(f"runs {len(rows)}; outputs identical: {len(sums) == 1} ({len(sums)} distinct)")
print(f"wall s: min {min(wall):.3f} median {statistics.median(wall):.3f} max {max(wall):.3f} "
      f"stdev {statistics.pstdev(wall):.4f}")
print(f"peak RSS MiB: min {min(rss)/1024:.1f} median {statistics.median(rss)/1024:.1f} "
      f"max {max(rss)/1024:.1f}; last - first {(rss[-1]-rss[0])/1024:+.1f}")
sys.exit(0 if len(sums) == 1 else 1)
PY
