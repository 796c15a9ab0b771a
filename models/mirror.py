"""The left-right mirror of a trained CIFAR ResNet, as a second ensemble member.

Every conv kernel is flipped along its width; nothing else changes (batch norms, the
classifier and the global average pool are left-right symmetric).  For stride-1 layers
this is exact: mirror(model)(x) = model(flip(x)).  The two stride-2 convs and the option-A
shortcuts sample the even columns of their input, which after a flip are the odd ones of
the original, so at the downsamplings the mirror is only approximately the model on the
flipped image.  It is a ResNet-20 of the same architecture, so the compiler runs it like
any member (`fhec compile A.onnx A_mirror.onnx --ensemble`) at the cost of any 2-model
ensemble; no training.

Why: every quadratic ResNet-20 trained here starts from the one shared ReLU ResNet-20 and
the members agree on ~97.7 % of the test images, so averaging them barely helps
(docs/ACCURACY.md, "Ensembles").  A model and its mirror agree on only ~92.7 %.

    python models/mirror.py models/weights/resnet20_quad_c4kd32.pt   # -> ..._mirror.pt

Measured (session 11, full test set; `models/ensemble.py`): c4kd32 91.18 %, its mirror
90.09 %, the two softmax-averaged 91.67 %.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
from pathlib import Path

import torch


def mirrored_state(state: dict) -> dict:
    """The state dict with every 4-D (conv) weight flipped along its last (width) axis."""
    return {k: (torch.flip(v, [3]) if k.endswith("weight") and v.ndim == 4 else v.clone())
            for k, v in state.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="state-dict file (as models/weights/*.pt)")
    ap.add_argument("-o", "--out", type=Path, default=None,
                    help="output state dict (default: <weights stem>_mirror.pt beside it)")
    args = ap.parse_args()
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not any(v.ndim == 4 for v in state.values()):
        raise SystemExit(f"{args.weights}: not a state dict with conv weights")
    out = args.out or args.weights.with_name(f"{args.weights.stem}_mirror.pt")
    torch.save(mirrored_state(state), out)
    n = sum(1 for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    print(f"{out}: {n} conv kernels mirrored")


if __name__ == "__main__":
    main()
