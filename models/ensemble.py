"""Top-1 accuracy of an ensemble of CIFAR ResNets on the full CIFAR-10 test set:
softmax outputs averaged over the members (eval mode, no clamp before the quadratic).
A member whose logits are non-finite for an image contributes nothing to that image
(if all members are non-finite the image counts as wrong); the number of such images is
printed, and so is the strict top-1 that counts every such image as wrong (an encrypted
run has no NaN: the blown-up member's values wrap around the modulus and its decrypted
softmax is arbitrary).  Each member's own top-1 and the members' pairwise agreement (same
top-1 class) are printed too.

    python models/ensemble.py --depth 20 models/weights/resnet20_quad.pt models/weights/resnet20_quad_seed1.pt

A member "shared:D" is the shared pretrained ReLU model of depth D (with --act relu), so
that teachers of different depths can be measured together:

    python models/ensemble.py --act relu shared:44 shared:56
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse

import torch

import data
import resnet_cifar as rc


def build_member(spec, depth, act):
    """The model of one member: a state-dict file of --depth, or "shared:D"."""
    if spec.startswith("shared:"):
        d = spec.split(":", 1)[1]
        if not d.isdigit() or int(d) not in rc.DEPTHS:
            raise SystemExit(f"member {spec!r}: expected shared:D with D in {sorted(rc.DEPTHS)}")
        return rc.build(int(d), act, "shared")
    return rc.build(depth, act, spec)


@torch.no_grad()
def member_probs(model, x_test, batch=500):
    model.eval()
    model.set_record(False)
    out = []
    for i in range(0, len(x_test), batch):
        logits = model(rc.normalise(torch.from_numpy(x_test[i:i + batch])))
        out.append(torch.softmax(logits.double(), 1))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+",
                    help='state-dict files of the members, or "shared:D" for the shared weights of depth D')
    ap.add_argument("--depth", type=int, default=20, choices=sorted(rc.DEPTHS))
    ap.add_argument("--act", default="quad", choices=["relu", "quad"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, _, x_test, y_test = data.load_cifar10()
    y = torch.from_numpy(y_test)
    total = torch.zeros(len(y), 10, dtype=torch.float64)
    count = torch.zeros(len(y), 1, dtype=torch.float64)
    preds = []
    for w in args.weights:
        p = member_probs(build_member(w, args.depth, args.act), x_test)
        ok = torch.isfinite(p).all(1, keepdim=True)
        acc = 100.0 * float(((p.argmax(1) == y) & ok[:, 0]).double().mean())
        print(f"member {w}: top-1 {acc:.2f} %, non-finite for {int((~ok).sum())} images")
        preds.append(torch.where(ok[:, 0], p.argmax(1), torch.full_like(y, -1)))
        total += torch.where(ok, p, torch.zeros_like(p))
        count += ok.double()
    none = count[:, 0] == 0
    all_finite = count[:, 0] == len(args.weights)
    pred = total.argmax(1)
    correct = int(((pred == y) & ~none).sum())
    print(f"ensemble of {len(args.weights)} (softmax averaged): top-1 {100.0 * correct / len(y):.2f} % "
          f"({correct}/{len(y)}); images with a non-finite member: {int((~all_finite).sum())}, "
          f"with no finite member: {int(none.sum())}")
    strict = int(((pred == y) & all_finite).sum())
    print(f"strict top-1 (an image with any non-finite member counts as wrong): "
          f"{100.0 * strict / len(y):.2f} % ({strict}/{len(y)})")
    for i in range(len(preds)):
        for j in range(i + 1, len(preds)):
            agree = float(((preds[i] == preds[j]) & (preds[i] >= 0)).double().mean()) * 100.0
            print(f"agreement of members {i + 1} and {j + 1} (same top-1 class, both finite): {agree:.2f} %")


if __name__ == "__main__":
    main()
