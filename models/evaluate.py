"""Top-1 accuracy of a CIFAR ResNet on the full CIFAR-10 test set (10,000 images).

Evaluation is in eval mode (BN running statistics, no clamp before the quadratic).
With --stats (default for quadratic models) it also reports the largest
|pre-activation| over the test set and the fraction of pre-activation values outside
[-2, 2], i.e. outside the range the quadratic was fitted on.  It also checks that the
20 golden PNGs in tests/data/cifar10 are pixel-identical to test images 0..19.

Examples:
    python models/evaluate.py --depth 20 --act relu --weights shared   # 91.73 %
    python models/evaluate.py --depth 32 --act relu --weights shared   # 92.63 %
    python models/evaluate.py --depth 20 --act quad --weights models/weights/resnet20_quad.pt
"""

import os

# Under CPU contention (other builds on the same 2 cores) spinning OpenMP workers waste
# most of their time; passive waiting made a training step ~3x faster here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math

import numpy as np
import torch

import data
import resnet_cifar as rc


@torch.no_grad()
def evaluate(model, x_test, y_test, batch=500, stats=False, bound=rc.QUAD_RANGE):
    """Return dict(acc, correct, n, nan_logits, [max_pre, frac_out, img_max]); img_max is
    each image's largest |activation input| (NaN counts as inf)."""
    model.eval()
    model.set_record(stats)
    correct, max_pre, n_out, n_pre, nan_rows = 0, 0.0, 0, 0, 0
    img_max = []
    for i in range(0, len(x_test), batch):
        x = rc.normalise(torch.from_numpy(x_test[i:i + batch]))
        y = torch.from_numpy(y_test[i:i + batch])
        logits = model(x)
        finite = torch.isfinite(logits).all(1)
        nan_rows += int((~finite).sum())
        # An image with non-finite logits counts as wrong (argmax over NaN is arbitrary).
        correct += int(((logits.argmax(1) == y) & finite).sum())
        if stats:
            im = torch.zeros(len(x))
            for a in model.preacts():
                im = torch.maximum(im, torch.nan_to_num(a.abs(), nan=math.inf).amax(dim=(1, 2, 3)))
                fa = a.abs()
                m = float(fa.max())
                max_pre = m if (math.isnan(m) or m > max_pre) else max_pre
                n_out += int((fa > bound).sum()) + int(torch.isnan(a).sum())
                n_pre += a.numel()
            img_max.append(im)
    model.set_record(False)
    out = dict(acc=100.0 * correct / len(x_test), correct=correct, n=len(x_test),
               nan_logits=nan_rows)
    if stats:
        out.update(max_pre=max_pre, frac_out=n_out / max(n_pre, 1),
                   img_max=torch.cat(img_max).numpy())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=20, choices=sorted(rc.DEPTHS))
    ap.add_argument("--act", default="relu", choices=["relu", "quad"])
    ap.add_argument("--weights", default="shared",
                    help='"shared" (pretrained ReLU weights) or a state-dict file')
    ap.add_argument("--stats", action="store_true", help="pre-activation range statistics")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    _, _, x_test, y_test = data.load_cifar10()
    n_golden = data.check_golden(x_test, y_test)
    model = rc.build(args.depth, args.act, args.weights)
    r = evaluate(model, x_test, y_test, stats=args.stats or args.act == "quad")
    print(f"golden PNGs: {n_golden} match test images 0..{n_golden - 1}")
    print(f"resnet{args.depth} {args.act} weights={args.weights}: top-1 {r['acc']:.2f} % "
          f"({r['correct']}/{r['n']}), non-finite logits in {r['nan_logits']} images")
    if "max_pre" in r:
        print(f"max |pre-activation| {r['max_pre']:.4g}; fraction outside "
              f"[-{rc.QUAD_RANGE:g}, {rc.QUAD_RANGE:g}]: {r['frac_out']:.3e}")
        im = r["img_max"]
        q = np.quantile(im, [0.5, 0.99, 0.999])
        print(f"per-image max |pre-activation|: median {q[0]:.3g}, 99th percentile {q[1]:.3g}, "
              f"99.9th {q[2]:.3g}; images with any activation input beyond 2: {int((im > 2).sum())}, "
              f"beyond 4: {int((im > 4).sum())}, beyond 100: {int((im > 100).sum())}, "
              f"non-finite: {int((~np.isfinite(im)).sum())}; largest finite "
              f"{float(im[np.isfinite(im)].max()) if np.isfinite(im).any() else float('nan'):.4g}")


if __name__ == "__main__":
    main()
