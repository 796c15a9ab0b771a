"""A ResNet-20 starting point taken from a deeper shared ReLU ResNet (32, 44 or 56), for
ensemble members that do not share the pretrained ReLU ResNet-20 start.

Every member fine-tuned from the one shared ReLU ResNet-20 makes the same mistakes
(docs/ACCURACY.md, "Ensembles"): c3kd and seed1_c3kd32 agree on 97.66 % of the test
images.  A ResNet-20 built from another, independently trained network is a different
start.  It keeps the stem, the classifier and, in each of the three stages, 3 of the deeper
net's n blocks, evenly spaced and always including block 0 (the one with the stride and the
shortcut): for ResNet-32 (n = 5) blocks 0, 2, 4.  Dropping blocks shifts the statistics the
later batch norms see, so their running statistics are then re-estimated (cumulative
average, no augmentation) on the first --calib training images; no weight is trained here.

    python models/init_from_deeper.py --from-depth 32 -o models/weights/resnet20_relu_from32.pt

Measured (first 2,000 test images, session 10): the shared ReLU ResNet-32 92.7 %; its
blocks 0, 2, 4 as a ResNet-20 21.3 % as they are, 63.0 % after the recalibration (blocks
0, 1, 2: 58.0 %; 0, 3, 4: 48.0 %).  The ReLU fine-tune of models/train_all.sh
(run r20_relu_f32_s4) heals it before the quadratic recipe runs.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
from pathlib import Path

import numpy as np
import torch

import data
import evaluate as ev
import resnet_cifar as rc


def kept_blocks(n: int, keep: int = 3) -> list[int]:
    """`keep` evenly spaced block indices out of n, the first and the last included."""
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, keep)})


def shallow_from_deep(deep: rc.ResNetCifar, depth: int = 20) -> rc.ResNetCifar:
    """A `depth` ResNet holding the stem, classifier and evenly spaced blocks of `deep`."""
    small = rc.ResNetCifar(depth, deep.act_kind)
    pick = kept_blocks(rc.DEPTHS[deep.depth], rc.DEPTHS[depth])
    src = deep.state_dict()
    new = {}
    for key in small.state_dict():
        if key.startswith("layer"):
            layer, block, rest = key.split(".", 2)
            new[key] = src[f"{layer}.{pick[int(block)]}.{rest}"]
        else:
            new[key] = src[key]
    small.load_state_dict(new)
    return small


@torch.no_grad()
def recalibrate_bn(model: rc.ResNetCifar, x_uint8: np.ndarray, batch: int = 500) -> rc.ResNetCifar:
    """Re-estimate every batch norm's running mean / variance on `x_uint8` (cumulative)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in range(0, len(x_uint8), batch):
        model(rc.normalise(torch.from_numpy(x_uint8[i:i + batch])))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-depth", type=int, default=32, choices=[d for d in sorted(rc.DEPTHS) if d > 20])
    ap.add_argument("--calib", type=int, default=5000, help="training images for the BN recalibration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x_train, _, x_test, y_test = data.load_cifar10()
    deep = rc.build(args.from_depth, "relu", "shared")
    small = shallow_from_deep(deep)
    print(f"ResNet-20 from ReLU ResNet-{args.from_depth}, blocks {kept_blocks(rc.DEPTHS[args.from_depth])} "
          f"per stage: {ev.evaluate(small, x_test, y_test)['acc']:.2f} % as taken", flush=True)
    recalibrate_bn(small, x_train[:args.calib])
    print(f"after BN recalibration on {args.calib} training images: {ev.evaluate(small, x_test, y_test)['acc']:.2f} % "
          f"(full test set)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(small.state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
