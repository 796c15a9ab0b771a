"""Regenerates the "### Runs" part of docs/ACCURACY.md (up to the next "## " section) from
models/runs/<run>.log: a status table and each run's per-epoch table (models/log_table.py).
    python3 models/update_accuracy_runs.py "r20_quad_s0=finished ..." "r32_quad_s0=training ..."
(a run not named keeps the status it has in the current table, or "queued")."""
import subprocess, sys, re
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
status = dict(a.split("=", 1) for a in sys.argv[1:])  # run=status text
runs = [("r20_quad_s0", "ResNet-20 quad, seed 0"), ("r20_quad_s0_c2", "ResNet-20 quad, seed 0, second cosine cycle (25 epochs from r20_quad_s0)"), ("r32_quad_s0", "ResNet-32 quad, seed 0"),
        ("r20_quad_s0_c3kd", "ResNet-20 quad, seed 0, third cycle with distillation from the ReLU ResNet-20 (20 epochs from r20_quad_s0_c2)"),
        ("r32_quad_s0_c2kd", "ResNet-32 quad, seed 0, second cycle with distillation from the ReLU ResNet-32 (20 epochs from r32_quad_s0)"),
        ("r32_quad_s0_c2kdz", "ResNet-32 quad, seed 0, second distilled cycle with zeta 0.3 and lr 0.005 (20 epochs from r32_quad_s0)"),
        ("r32_quad_s0_c3kdz", "ResNet-32 quad, seed 0, third distilled cycle, same recipe (20 epochs from r32_quad_s0_c2kdz)"),
        ("r20_quad_s1", "ResNet-20 quad, seed 1"), ("r20_quad_s1_c2kd", "ResNet-20 quad, seed 1, distilled second cycle"),
        ("r20_quad_s1_c3kd32", "ResNet-20 quad, seed 1, third cycle distilled from the ReLU ResNet-32 (15 epochs from r20_quad_s1_c2kd)"),
        ("r20_quad_s2", "ResNet-20 quad, seed 2"), ("r20_quad_s2_c2kd", "ResNet-20 quad, seed 2, distilled second cycle"),
        ("r20_quad_s3", "ResNet-20 quad, seed 3"), ("r20_quad_s3_c2kd", "ResNet-20 quad, seed 3, distilled second cycle"), ("r20_quad_nopen_s0", "ResNet-20 quad, zeta = 0 (ablation)"),
        ("r32_quad_nopen_s0", "ResNet-32 quad, zeta = 0 (ablation)"),
        ("r20_quad_s0_c4kd32", "ResNet-20 quad, seed 0, fourth cycle distilled from the ReLU ResNet-32 (15 epochs from r20_quad_s0_c3kd)"),
        ("r20_relu_f32_s4", "ResNet-20 ReLU from ReLU-32 blocks 0, 2, 4 (init_from_deeper.py), healed 10 epochs with distillation from ReLU-32"),
        ("r20_quad_f32_s4", "ResNet-20 quad, seed 4, first cycle from r20_relu_f32_s4, distilled from ReLU-32"),
        ("r20_quad_f32_s4_c2kd", "ResNet-20 quad, seed 4, distilled second cycle (15 epochs from r20_quad_f32_s4)"),
        ("r32_quad_s0_c4kdz", "ResNet-32 quad, seed 0, fourth distilled cycle (20 epochs from r32_quad_s0_c3kdz)"),
        ("r32_quad_s0_c5kdz15", "ResNet-32 quad, seed 0, fifth distilled cycle with zeta 0.15 (20 epochs from r32_quad_s0_c4kdz)"),
        ("r32_quad_s0_c6kd56z10", "ResNet-32 quad, seed 0, sixth cycle, zeta 0.1, distilled from the ReLU ResNet-56 (15 epochs from r32_quad_s0_c5kdz15)"),
        ("r32_quad_s0_c7kd56z10", "ResNet-32 quad, seed 0, seventh cycle, the sixth's recipe (15 epochs from r32_quad_s0_c6kd56z10)"),
        ("r32_quad_s0_c8kd4456", "ResNet-32 quad, seed 0, eighth cycle, the seventh's recipe distilled from the ReLU ResNet-44 and -56 averaged (15 epochs from r32_quad_s0_c7kd56z10)"),
        ("r32_quad_s0_c9kd324456", "ResNet-32 quad, seed 0, ninth cycle, the eighth's recipe distilled from the ReLU ResNet-32, -44 and -56 averaged (15 epochs from r32_quad_s0_c8kd4456)"),
        ("r32_quad_s0_c10kd324456", "ResNet-32 quad, seed 0, tenth cycle, the ninth's recipe with a gentler restart (8 epochs at peak lr 0.003 from r32_quad_s0_c9kd324456)")]
doc = (ROOT / "docs" / "ACCURACY.md").read_text()
for name, _ in runs:  # keep the current table's status of every run not named
    m = re.search(rf"^\| {re.escape(name)} \| [^|]* \| ([^|]*) \|", doc, re.M)
    if m and name not in status:
        status[name] = m.group(1).strip()
out = ["### Runs", "", "| run | model | status | test top-1 (last epoch) | max \\|pre-act\\| (test) |", "|---|---|---|---|---|"]
tables = []
for name, desc in runs:
    log = ROOT / "models" / "runs" / f"{name}.log"
    acc = mp = ""
    if log.exists():
        ep = [l for l in log.read_text().splitlines() if l.startswith("epoch ") and not l.startswith("epoch 0 ")]
        if ep:
            d = dict(re.findall(r"(\w+) (\S+)", ep[-1]))
            acc, mp = f"{d['test_acc']} % (epoch {d['epoch']})", d["max_pre"]
            tab = subprocess.run(["python3", str(ROOT / "models" / "log_table.py"), str(log)], capture_output=True, text=True).stdout
            tables.append(f"#### {name} (`models/runs/{name}.log`)\n\n{tab}")
    out.append(f"| {name} | {desc} | {status.get(name, 'queued')} | {acc} | {mp} |")
text = "\n".join(out) + "\n\nPer-epoch figures (training columns: clamp and batch statistics; test columns: eval mode, no clamp, full test set). The logs of r20_quad_s0 and r32_quad_s0 were written before evaluate.py counted images with non-finite logits as wrong, so their test top-1 may be up to (NaN images) / 100 points too high (for r20_quad_s0's epoch 15: 87.28 % logged, 87.27 % exact).\n\n" + "\n".join(tables)
p = ROOT / "docs" / "ACCURACY.md"; s = p.read_text()
a = s.index("### Runs") if "### Runs" in s else s.index("RUNS_PLACEHOLDER")
b = s.index("\n## ", a) + 1  # the next top-level section after the runs
p.write_text(s[:a] + text + "\n" + s[b:])
