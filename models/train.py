"""Fine-tune a CIFAR ResNet with the quadratic activation (resumable, deterministic).

Starts from the shared pretrained ReLU weights (or random init) and trains with
    L = CE + zeta_e * mean_a ||a - clamp(a, -B, B)||_2
where a runs over every pre-activation tensor (input of each activation, whole batch,
plain L2 norm, not squared) and B = 2.  Penalty warm-up: epoch 1 uses zeta/100 and no
cross-entropy, epoch 2 zeta/50, epoch 3 zeta/10, epoch 4 zeta/5, then zeta
(--zeta-warmup, --no-ce-epochs).  For fine-tuning, --warmup-stage-steps N compresses
the same warm-up: each multiplier then lasts N optimizer steps instead of one epoch
(and --no-ce-epochs counts those N-step stages), after which zeta applies;
--zeta-schedule changes zeta from given epochs on (a run can be resumed with a schedule
that changes only epochs after its checkpoint).  --init-scale T,S rescales the ReLU
weights ReLU-equivalently before training (pre-activations closer to [-2, 2]).  SGD with
momentum and weight decay, linear lr warm-up then cosine decay (per step), random crop
(pad 4) + horizontal flip, gradient-norm clipping, non-finite steps skipped (and counted).
Optional, off by default: --kd-alpha distils from the shared ReLU model of the same depth,
or from the teachers named by --kd-teacher (e.g. relu32, or relu20+relu32 averaged).

Everything a run needs to continue lives in its checkpoint directory
(default ~/.cache/fhec/train/<run-name>/, outside the work tree):
    last.pt    model + optimizer + scheduler + RNG state + epoch, written every epoch
    train.log  one line per epoch (also copied to --log-copy, by default
               models/runs/<run-name>.log)
    final.pt   the final state dict (also copied to --weights-out if given)
Every --repo-ckpt-every epochs (and after the last) last.pt is also copied into the work
tree, models/checkpoints/<run-name>/last.pt (a few MB, meant to be committed so that a
run survives the loss of the machine).
--resume continues from last.pt, or, when the checkpoint directory has none, from the
work-tree copy (the log is then seeded from models/runs/<run-name>.log); resuming a
finished run is a no-op.  A file HOLD in the checkpoint root stops runs that have not
started yet from starting.
The data order and augmentation of epoch e depend only on (seed, e), so a resumed run
follows the same trajectory as an uninterrupted one.

Example (the recipe of models/train_all.sh):
    python models/train.py --run-name r20_quad_s0 --depth 20 --seed 0 --epochs 15 \\
        --lr 0.01 --zeta 0.2 --init-scale 0.5,0.7 --warmup-stage-steps 20 \\
        --lr-warmup-epochs 0.1 --zeta-schedule 10:0.05 --resume \\
        --weights-out models/weights/resnet20_quad.pt
Quick trial (prints one line, keeps nothing):
    python models/train.py --run-name trial --max-steps 150 --eval-n 1000 ...
"""

import os

# Under CPU contention (other builds on the same 2 cores) spinning OpenMP workers waste
# most of their time; passive waiting made a training step ~3x faster here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import fcntl
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import data
import evaluate as ev
import resnet_cifar as rc

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CKPT_ROOT = Path.home() / ".cache" / "fhec" / "train"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-name", required=True)
    ap.add_argument("--depth", type=int, default=20, choices=sorted(rc.DEPTHS))
    ap.add_argument("--act", default="quad", choices=["quad", "relu"])
    ap.add_argument("--init", default="shared", help='"shared", "random" or a state-dict file')
    ap.add_argument("--init-scale", default="",
                    help='"T,S": rescale the initial weights ReLU-equivalently, residual stream '
                         'times T and in-block activations times S (resnet_cifar.rescale_relu_equivalent)')
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--lr-warmup-epochs", type=float, default=1.0)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--zeta", type=float, default=1e-3, help="penalty weight (0: no penalty)")
    ap.add_argument("--zeta-warmup", default="0.01,0.02,0.1,0.2",
                    help="multipliers of zeta for epochs 1,2,...; later epochs use 1")
    ap.add_argument("--no-ce-epochs", type=int, default=1,
                    help="first epochs (or warm-up stages) trained on the penalty alone (no CE)")
    ap.add_argument("--zeta-schedule", default="",
                    help='later changes of zeta, "E:Z[,E:Z...]": from epoch E on (1-based) zeta is Z '
                         '(overrides the warm-up); e.g. "9:0.05"')
    ap.add_argument("--warmup-stage-steps", type=int, default=0,
                    help="length in steps of each penalty warm-up stage (0: one epoch each, "
                         "as in the reference recipe)")
    ap.add_argument("--kd-alpha", type=float, default=0.0,
                    help="weight of distillation from the --kd-teacher ReLU model(s) (0: plain CE); the "
                         "CE term becomes (1-a) CE + a T^2 KL(teacher || student) at temperature T")
    ap.add_argument("--kd-temp", type=float, default=4.0)
    ap.add_argument("--kd-teacher", default="same",
                    help='teacher for --kd-alpha: "same" (the shared ReLU model of --depth), '
                         f'{", ".join(f"relu{d}" for d in sorted(rc.DEPTHS))}, or several joined by "+" '
                         '(e.g. "relu20+relu32": their temperature-T softmaxes averaged)')
    ap.add_argument("--bn-frozen", action="store_true",
                    help="train with every batch norm in eval mode: normalise with the running "
                         "statistics and leave them unchanged (gamma and beta still train), so that "
                         "the loss and the range penalty see the network that is deployed (only the "
                         "activation clamp still differs)")
    ap.add_argument("--bound", type=float, default=rc.QUAD_RANGE)
    ap.add_argument("--clip", type=float, default=1.0, help="max gradient L2 norm (0: off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-root", type=Path, default=DEFAULT_CKPT_ROOT)
    ap.add_argument("--resume", action="store_true", help="continue from last.pt if present")
    ap.add_argument("--weights-out", type=Path, default=None,
                    help="copy the final state dict here (e.g. models/weights/resnet20_quad.pt)")
    ap.add_argument("--log-copy", type=Path, default=None,
                    help="copy train.log here after every epoch (default models/runs/<run>.log)")
    ap.add_argument("--repo-ckpt-every", type=int, default=2,
                    help="copy last.pt to models/checkpoints/<run>/ every N epochs (0: never)")
    ap.add_argument("--repo-ckpt-dir", type=Path, default=REPO_ROOT / "models" / "checkpoints")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="sanity trial: stop after this many steps (no checkpoint)")
    ap.add_argument("--steps-per-epoch", type=int, default=0,
                    help="testing only: fewer steps per epoch (0: the full training set)")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="exit after this epoch (checkpointed); --resume continues later")
    ap.add_argument("--eval-n", type=int, default=10000,
                    help="testing only: evaluate on the first N test images")
    ap.add_argument("--eval-batch", type=int, default=500)
    return ap.parse_args(argv)


# Arguments that define the trajectory; a resumed run must agree on them.
TRAJECTORY_KEYS = ["depth", "act", "init", "init_scale", "epochs", "lr", "lr_warmup_epochs", "momentum",
                   "wd", "batch", "zeta", "zeta_warmup", "zeta_schedule", "no_ce_epochs", "warmup_stage_steps", "kd_alpha", "kd_temp", "kd_teacher", "bound",
                   "bn_frozen",
                   "clip", "seed", "steps_per_epoch"]


def teacher_depths(args):
    """Depths of the shared ReLU teachers named by --kd-teacher."""
    if args.kd_teacher == "same":
        return [args.depth]
    depths = []
    for name in args.kd_teacher.split("+"):
        name = name.strip()
        if not name.startswith("relu") or not name[4:].isdigit() or int(name[4:]) not in rc.DEPTHS:
            sys.exit(f"--kd-teacher: unknown teacher {name!r} (expected relu<depth>, a shared ReLU depth "
                     f"in {sorted(rc.DEPTHS)}, joined by '+', or 'same')")
        depths.append(int(name[4:]))
    return depths


def build_teachers(args):
    """The frozen shared ReLU teachers of --kd-teacher, in eval mode."""
    teachers = []
    for depth in teacher_depths(args):
        t = rc.build(depth, "relu", "shared").eval()
        for q in t.parameters():
            q.requires_grad_(False)
        teachers.append(t)
    return teachers


def teacher_log_probs(teachers, x, temp):
    """log of the teachers' temperature-`temp` softmaxes averaged (one teacher: its log-softmax)."""
    logps = [F.log_softmax(t(x) / temp, 1) for t in teachers]
    if len(logps) == 1:
        return logps[0]
    return torch.logsumexp(torch.stack(logps), 0) - math.log(len(logps))


def warmup_stage(args, epoch, step):
    """0-based penalty warm-up stage of a step (epoch 1-based, step the 0-based global step)."""
    return step // args.warmup_stage_steps if args.warmup_stage_steps > 0 else epoch - 1


def zeta_and_ce(args, epoch, step):
    """(zeta, whether CE is used) for one optimizer step."""
    mult = [float(m) for m in args.zeta_warmup.split(",") if m.strip()]
    stage = warmup_stage(args, epoch, step)
    zeta = args.zeta * (mult[stage] if stage < len(mult) else 1.0)
    for e, z in parse_zeta_schedule(args.zeta_schedule):
        if epoch >= e:
            zeta = z
    return zeta, stage >= args.no_ce_epochs


def parse_zeta_schedule(text):
    out = []
    for item in text.split(","):
        if item.strip():
            e, z = item.split(":")
            out.append((int(e), float(z)))
    return sorted(out)


def schedules_agree_until(a, b, epoch):
    """Whether two --zeta-schedule strings give the same zeta for epochs 1..epoch."""
    sa = [x for x in parse_zeta_schedule(a) if x[0] <= epoch]
    sb = [x for x in parse_zeta_schedule(b) if x[0] <= epoch]
    return sa == sb


def lr_lambda_factory(total_steps, warm_steps):
    def f(step):
        if step < warm_steps:
            return (step + 1) / warm_steps
        t = (step - warm_steps) / max(1, total_steps - warm_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def augment_batch(x_pad, idx, rng):
    """Random 32x32 crop of the 4-padded images + random horizontal flip (uint8 NHWC)."""
    n = len(idx)
    oy = rng.integers(0, 9, n)
    ox = rng.integers(0, 9, n)
    flip = rng.random(n) < 0.5
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for j in range(n):
        img = x_pad[idx[j], oy[j]:oy[j] + 32, ox[j]:ox[j] + 32]
        out[j] = img[:, ::-1] if flip[j] else img
    return out


def range_penalty(preacts, bound):
    norms = [torch.linalg.vector_norm(a - a.clamp(-bound, bound)) for a in preacts]
    return torch.stack(norms).mean()


def rng_state():
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())


def set_rng_state(s):
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def atomic_save(obj, path: Path):
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def copy_file(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir = args.ckpt_root / args.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    log_copy = args.log_copy or (REPO_ROOT / "models" / "runs" / f"{args.run_name}.log")
    last_path, final_path = run_dir / "last.pt", run_dir / "final.pt"
    trial = args.max_steps > 0

    def log(line):
        print(line, flush=True)
        if not trial:
            with open(log_path, "a") as f:
                f.write(line + "\n")
            copy_file(log_path, log_copy)

    def finish(model_state):
        if not final_path.exists():
            atomic_save(model_state, final_path)
        if args.weights_out is not None:
            copy_file(final_path, args.weights_out)
        copy_file(log_path, log_copy)

    # A file HOLD in the checkpoint root pauses the queue: runs that have not started
    # yet refuse to start (runs with a checkpoint still resume).
    hold = args.ckpt_root / "HOLD"
    if hold.exists() and not last_path.exists() and not trial:
        sys.exit(f"{hold} exists: not starting {args.run_name}")

    # One process per run: a second one (say, train_all.sh reaching a run started by hand)
    # exits instead of racing the first on the same checkpoints.
    if not trial:
        lock_file = open(run_dir / "run.lock", "w")  # held (kept open) until the process exits
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"{args.run_name} is already being trained by another process "
                     f"(lock {run_dir / 'run.lock'})")

    # ---- resume ---------------------------------------------------------------
    ckpt = None
    repo_last = args.repo_ckpt_dir / args.run_name / "last.pt"
    if args.resume and not last_path.exists() and repo_last.exists() and not trial:
        # Fresh machine: continue from the committed copy (and its committed log).
        copy_file(repo_last, last_path)
        if not log_path.exists() and log_copy.exists():
            copy_file(log_copy, log_path)
        print(f"{args.run_name}: no {last_path}; resuming from the work-tree copy {repo_last}")
    if args.resume and last_path.exists() and not trial:
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        saved = ckpt["args"]
        diff = {k: (saved.get(k, parse_args(["--run-name", "x"]).__dict__[k]), getattr(args, k))
                for k in TRAJECTORY_KEYS}
        diff = {k: v for k, v in diff.items() if v[0] != v[1]}
        # A zeta schedule that only changes epochs after the checkpoint leaves the
        # trajectory so far as it was: a run may be continued with it.
        if "zeta_schedule" in diff and schedules_agree_until(*diff["zeta_schedule"], ckpt["epoch"]):
            del diff["zeta_schedule"]
        if diff:
            sys.exit(f"{last_path}: arguments differ from the checkpointed run: {diff}")
        if ckpt["epoch"] >= args.epochs:
            finish(ckpt["model"])
            print(f"{args.run_name}: already finished ({ckpt['epoch']} epochs); nothing to do")
            return
    elif last_path.exists() and not trial:
        sys.exit(f"{last_path} exists: pass --resume to continue it, or pick another --run-name")

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    x_train, y_train, x_test, y_test = data.load_cifar10()
    x_test, y_test = x_test[:args.eval_n], y_test[:args.eval_n]
    x_pad = np.pad(x_train, ((0, 0), (4, 4), (4, 4), (0, 0)))
    steps_per_epoch = len(x_train) // args.batch
    if args.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.steps_per_epoch)
    total_steps = steps_per_epoch * args.epochs

    init = None if args.init == "random" else args.init
    model = rc.build(args.depth, args.act, init)
    if args.init_scale:
        t, s = (float(v) for v in args.init_scale.split(","))
        rc.rescale_relu_equivalent(model, t, s)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    # Weight decay on all parameters (as in the reference recipe); kept as two groups
    # so that this is easy to change.
    opt = torch.optim.SGD([dict(params=decay), dict(params=no_decay)], lr=args.lr,
                          momentum=args.momentum, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda_factory(total_steps, int(round(args.lr_warmup_epochs * steps_per_epoch))))
    start_epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch = ckpt["epoch"]
        log(f"# resumed {args.run_name} after epoch {start_epoch} at {time.strftime('%Y-%m-%d %H:%M:%S')}"
            " (epochs after that one logged above, if any, are redone)")
    else:
        if not trial:
            log(f"# run {args.run_name} started {time.strftime('%Y-%m-%d %H:%M:%S')} "
                f"args {json.dumps({k: getattr(args, k) for k in TRAJECTORY_KEYS})}")
            if args.act == "quad":
                r0 = ev.evaluate(model, x_test, y_test, args.eval_batch, stats=True, bound=args.bound)
                log(f"epoch 0 test_acc {r0['acc']:.2f} frac_out {r0['frac_out']:.3e} "
                    f"max_pre {r0['max_pre']:.4g} (initial weights, before any training)")

    teachers = build_teachers(args) if args.kd_alpha > 0 else None
    model.set_record(args.act == "quad" or args.zeta > 0)
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch + 1, args.epochs + 1):
        t0 = time.time()
        rng = np.random.default_rng([args.seed, epoch])
        perm = rng.permutation(len(x_train))
        model.train()
        if args.bn_frozen:
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        model.set_record(True)
        sums = dict(ce=0.0, pen=0.0, loss=0.0, correct=0, n=0, gnorm=0.0, skipped=0,
                    out=0, pre=0, maxpre=0.0, ce_steps=0)
        bar = tqdm(range(steps_per_epoch), desc=f"{args.run_name} ep {epoch}/{args.epochs}",
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, leave=sys.stderr.isatty())
        for b in bar:
            idx = perm[b * args.batch:(b + 1) * args.batch]
            x = rc.normalise(torch.from_numpy(augment_batch(x_pad, idx, rng)))
            y = torch.from_numpy(y_train[idx])
            zeta, use_ce = zeta_and_ce(args, epoch, step)
            sums["ce_steps"] += int(use_ce)
            logits = model(x)
            ce = F.cross_entropy(logits, y)
            task = ce
            if teachers is not None:
                T = args.kd_temp
                with torch.no_grad():
                    t_logp = teacher_log_probs(teachers, x, T)
                kd = F.kl_div(F.log_softmax(logits / T, 1), t_logp,
                              reduction="batchmean", log_target=True) * T * T
                task = (1 - args.kd_alpha) * ce + args.kd_alpha * kd
            pre = model.preacts()
            pen = range_penalty(pre, args.bound)
            with torch.no_grad():
                sums["out"] += sum(int((a.abs() > args.bound).sum()) for a in pre)
                sums["pre"] += sum(a.numel() for a in pre)
                sums["maxpre"] = max(sums["maxpre"], max(float(a.abs().max()) for a in pre))
            loss = (task if use_ce else 0.0 * task) + zeta * pen
            opt.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):
                sums["skipped"] += 1
                sched.step()
                step += 1
                continue
            loss.backward()
            if args.clip > 0:
                gnorm = float(nn.utils.clip_grad_norm_(model.parameters(), args.clip))
            else:
                gnorm = float(torch.linalg.vector_norm(torch.stack(
                    [p.grad.norm() for p in model.parameters() if p.grad is not None])))
            if not math.isfinite(gnorm):
                sums["skipped"] += 1
                opt.zero_grad(set_to_none=True)
            else:
                opt.step()
            sched.step()
            step += 1
            sums["ce"] += ce.item()
            sums["pen"] += pen.item()
            sums["loss"] += loss.item()
            sums["gnorm"] += gnorm if math.isfinite(gnorm) else 0.0
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["n"] += len(idx)
            k = b + 1 - sums["skipped"]
            bar.set_postfix(ce=f"{sums['ce'] / max(k, 1):.3f}", pen=f"{sums['pen'] / max(k, 1):.3g}",
                            lr=f"{sched.get_last_lr()[0]:.2e}", refresh=False)
            if trial and step >= args.max_steps:
                break
        bar.close()
        k = max(1, (b + 1) - sums["skipped"])
        model.set_record(False)
        r = ev.evaluate(model, x_test, y_test, args.eval_batch, stats=True, bound=args.bound)
        line = (f"epoch {epoch} lr {sched.get_last_lr()[0]:.3e} zeta {zeta:.1e} "
                f"ce_used {sums['ce_steps'] / max(b + 1, 1):.3g} "
                f"loss {sums['loss'] / k:.4f} ce {sums['ce'] / k:.4f} penalty {sums['pen'] / k:.4g} "
                f"train_acc {100.0 * sums['correct'] / max(sums['n'], 1):.2f} "
                f"train_frac_out {sums['out'] / max(sums['pre'], 1):.3e} train_max_pre {sums['maxpre']:.4g} "
                f"test_acc {r['acc']:.2f} frac_out {r['frac_out']:.3e} max_pre {r['max_pre']:.4g} "
                f"nan_logits {r['nan_logits']} gnorm {sums['gnorm'] / k:.3f} skipped {sums['skipped']} "
                f"time_s {time.time() - t0:.0f}")
        log(line)
        if trial:
            return
        atomic_save(dict(model=model.state_dict(), optimizer=opt.state_dict(),
                         scheduler=sched.state_dict(), rng=rng_state(), epoch=epoch,
                         args={k: getattr(args, k) for k in TRAJECTORY_KEYS},
                         last_eval=r), last_path)
        if args.repo_ckpt_every and (epoch % args.repo_ckpt_every == 0 or epoch == args.epochs):
            copy_file(last_path, repo_last)
        if args.stop_after and epoch >= args.stop_after and epoch < args.epochs:
            log(f"# stopped after epoch {epoch} (--stop-after); --resume continues")
            return
    finish(model.state_dict())
    log(f"# finished {args.run_name} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
        f"final test_acc {r['acc']:.2f} max_pre {r['max_pre']:.4g}")


if __name__ == "__main__":
    main()
