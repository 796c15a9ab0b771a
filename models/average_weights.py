"""Weight averaging (SWA-style) of state dicts of one architecture: one model, no extra cost.

Averages the parameters of several trained state dicts of the same CIFAR ResNet (for
example the final weights of successive cosine cycles of one lineage, which start from
each other and so lie in one basin) into a single state dict.  The batch-norm running
statistics are either averaged like the weights (--bn average, the default) or re-estimated
for the averaged weights (--bn recompute: cumulative mean and variance over the first
--bn-images unaugmented training images, in training mode, i.e. with the quadratic's
training clamp, which keeps the re-estimation finite where an unclamped pass overflows).
The result is an ordinary state dict: evaluate it with evaluate.py, export it with
export.py, compile it like any trained model.

    python models/average_weights.py --depth 32 \\
        models/weights/resnet32_quad_c5kdz15.pt models/weights/resnet32_quad_c6kd56z10.pt \\
        -o models/weights/resnet32_quad_avg56.pt

Preconditions: every input is a state dict (bare, or under `model` / `state_dict`) of the
same depth; guarantees: the output loads into rc.build(depth, act, path) and its
floating-point entries are the element-wise means of the inputs' (running statistics
replaced when --bn recompute).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
from pathlib import Path

import torch
import torch.nn as nn

import data
import resnet_cifar as rc


def average_states(states: list) -> dict:
    """Element-wise mean of the floating-point entries; integer entries (BN batch
    counters) are taken from the first state.  All states must have the same keys."""
    keys = list(states[0].keys())
    for i, s in enumerate(states[1:], 1):
        if set(s.keys()) != set(keys):
            raise KeyError(f"input {i} has different entries: {sorted(set(s) ^ set(keys))}")
    out = {}
    for k in keys:
        v = states[0][k]
        if torch.is_floating_point(v):
            out[k] = torch.stack([s[k].to(torch.float64) for s in states]).mean(0).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


@torch.no_grad()
def recompute_bn(model: nn.Module, x_train, n_images: int, batch: int = 500):
    """Replace every BN's running statistics by their cumulative estimate over the first
    n_images training images (no augmentation), in training mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    model.set_record(False)
    for i in range(0, n_images, batch):
        model(rc.normalise(torch.from_numpy(x_train[i:min(i + batch, n_images)])))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path, help="state-dict files to average")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--depth", type=int, default=20, choices=sorted(rc.DEPTHS))
    ap.add_argument("--act", default="quad", choices=["quad", "relu"])
    ap.add_argument("--bn", default="average", choices=["average", "recompute"])
    ap.add_argument("--bn-images", type=int, default=50000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if len(args.inputs) < 2:
        ap.error("give at least two state dicts to average")

    states = [rc.read_state_dict(p) for p in args.inputs]
    model = rc.load_state(rc.ResNetCifar(args.depth, args.act), average_states(states))
    if args.bn == "recompute":
        x_train, _, _, _ = data.load_cifar10()
        recompute_bn(model, x_train, min(args.bn_images, len(x_train)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    bn = f"re-estimated on {args.bn_images} training images" if args.bn == "recompute" else "averaged"
    names = ", ".join(p.name for p in args.inputs)
    print(f"{args.out}: mean of {len(states)} state dicts ({names}), BN statistics {bn}")


if __name__ == "__main__":
    main()
