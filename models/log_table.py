"""Markdown table of the per-epoch lines of a training log (models/runs/<run>.log).

    python3 models/log_table.py models/runs/r20_quad_s0.log
Columns: epoch, zeta, CE, penalty, train accuracy and fraction outside [-2, 2] (training
mode: clamp, batch statistics), test top-1, fraction outside, max |pre-act| and images
with non-finite logits (eval mode, no clamp, on the test images the run evaluates).
Only the last line of each epoch counts (a resumed run may redo an epoch)."""

import re
import sys


def parse(path):
    rows = {}
    for line in open(path):
        if not line.startswith("epoch "):
            continue
        toks = line.split()
        d = {toks[i]: toks[i + 1] for i in range(0, len(toks) - 1, 2)
             if re.fullmatch(r"[a-z_]+", toks[i])}
        rows[int(d["epoch"])] = d
    return [rows[k] for k in sorted(rows)]


def main():
    print("| epoch | zeta | CE | penalty | train acc | train outside | test top-1 | test outside | max \\|pre-act\\| | NaN images |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in parse(sys.argv[1]):
        if d["epoch"] == "0":
            print(f"| 0 (init) | | | | | | {d['test_acc']} % | {float(d['frac_out']):.2e} | {d['max_pre']} | |")
            continue
        print(f"| {d['epoch']} | {d['zeta']} | {d['ce']} | {d['penalty']} | {d['train_acc']} % | "
              f"{float(d['train_frac_out']):.2e} | {d['test_acc']} % | {float(d['frac_out']):.2e} | "
              f"{d['max_pre']} | {d['nan_logits']} |")


if __name__ == "__main__":
    main()
