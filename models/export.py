"""Export the CIFAR ResNets and the tiny test CNNs to ONNX, and check them with onnxruntime.

ResNets (models/onnx/), each with both torch exporters:
  * <name>.onnx         TorchScript exporter, opset 13, do_constant_folding=False
                        (BatchNormalization nodes kept)
  * <name>_dynamo.onnx  dynamo exporter, opset 18
  names: resnet20_relu, resnet32_relu (shared pretrained ReLU weights);
         resnet{20,32}_quad_random (quadratic, random weights, BN running statistics
         calibrated on random inputs so activations are of order 1: NOT trained);
         one model per trained quadratic state dict models/weights/resnet<d>_quad*.pt
         (e.g. resnet20_quad_c3kd.pt -> resnet20_quad_c3kd.onnx), except the no-penalty
         ablation;
         the published names (PUBLISHED: resnet20_quad, resnet32_quad,
         resnet20_quad_seed{1,2,3}) hold the best trained model of their lineage (e.g.
         resnet20_quad.onnx is resnet20_quad_c3kd.pt); the first-cycle state dict that
         shares such a name (resnet20_quad.pt) exports as <name>_c1.onnx.
  Input "input" (1, 3, 32, 32), already normalised; output "logits" (1, 10).
  metadata_props: "mean" and "std", comma-separated per-channel RGB floats in [0,1]
  pixel units (x_normalised = (pixel/255 - mean) / std).

Tiny test models (tests/data/, TorchScript exporter, opset 13, BN kept), each with a
reference input/output pair as serialized onnx TensorProto files
(tests/data/<name>_input.pb, <name>_output.pb; the output computed by onnxruntime).
The quadratic is written in different forms so the importer must recognise all of them.

Doc strings, node metadata (torch stack traces, source paths) and other local detail
are stripped, so re-exporting gives the same graphs.  Every file is checked against
PyTorch on a random input (trained quadratic ResNets: on golden test image 0) (max abs
difference printed; the script fails above a tolerance).

Usage:
    python models/export.py            # everything
    python models/export.py --tiny     # only the tiny test models
    python models/export.py --resnets  # only the ResNets
    python models/export.py --only resnet20_quad   # one ResNet (both exporters)
"""

import os

# Under CPU contention (other builds on the same 2 cores) spinning OpenMP workers waste
# most of their time; passive waiting made a training step ~3x faster here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import io
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

import resnet_cifar as rc

REPO_ROOT = Path(__file__).resolve().parent.parent
ONNX_DIR = REPO_ROOT / "models" / "onnx"
WEIGHTS_DIR = REPO_ROOT / "models" / "weights"
TINY_DIR = REPO_ROOT / "tests" / "data"
C0, C1, C2 = rc.QUAD_C0, rc.QUAD_C1, rc.QUAD_C2


# ---------------------------------------------------------------------------------
# ONNX cleaning and checking
# ---------------------------------------------------------------------------------
def _clear(msg):
    msg.ClearField("doc_string")
    del msg.metadata_props[:]


def _clean_graph(g: onnx.GraphProto):
    g.ClearField("doc_string")
    del g.metadata_props[:]
    for n in g.node:
        _clear(n)
        for a in n.attribute:
            a.ClearField("doc_string")
            if a.type == onnx.AttributeProto.GRAPH:
                _clean_graph(a.g)
            for sg in a.graphs:
                _clean_graph(sg)
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        _clear(vi)
    for t in g.initializer:
        _clear(t)


def clean(model: onnx.ModelProto, mean=None, std=None) -> onnx.ModelProto:
    """Strip doc strings / stack traces / metadata; set mean/std metadata."""
    _clear(model)
    _clean_graph(model.graph)
    for f in model.functions:
        _clear(f)
        for n in f.node:
            _clear(n)
    if mean is not None:
        for k, v in (("mean", mean), ("std", std)):
            p = model.metadata_props.add()
            p.key, p.value = k, ",".join(repr(float(x)) for x in v)
    text = str(model)
    if re.search(r"/(work|root|home|tmp)/", text):
        raise RuntimeError("a local path survived the cleaning")
    return model


def export_torchscript(module, x, path: Path, mean=None, std=None):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=13,
                          do_constant_folding=False, input_names=["input"],
                          output_names=["logits"])
    model = clean(onnx.load_from_string(buf.getvalue()), mean, std)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def export_dynamo(module, x, path: Path, mean=None, std=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, (x,), dynamo=True, opset_version=18,
                                 input_names=["input"], output_names=["logits"],
                                 external_data=False, verbose=False)
    model = clean(prog.model_proto, mean, std)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def check_against_torch(module, path: Path, x: torch.Tensor, tol: float) -> float:
    with torch.no_grad():
        ref = module(x).numpy()
    got = ort_run(path, x.numpy())
    diff = float(np.max(np.abs(ref - got)))
    scale = float(np.max(np.abs(ref)))
    ok = np.isfinite(diff) and diff <= tol * max(1.0, scale)
    print(f"  {path.relative_to(REPO_ROOT)}: {len(onnx.load(path).graph.node)} nodes, "
          f"max |torch - onnxruntime| = {diff:.3g} (max |out| {scale:.3g})")
    if not ok:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {diff}")
    return diff


# ---------------------------------------------------------------------------------
# ResNets
# ---------------------------------------------------------------------------------
@torch.no_grad()
def calibrate_random_quad(model: rc.ResNetCifar, seed: int, n: int = 256,
                          gamma: float = 0.2, gamma_res: float = 0.1):
    """Random conv/linear weights; BN calibrated on random normal inputs so that
    activations stay of order 1 in eval mode (no clamp).

    In forward order, each BN gets running statistics equal to the batch statistics of
    its input (so it normalises), scale ~gamma (~gamma_res for the BN before a residual
    add) and a bias that centres the input of the following activation per channel.
    The residual stream is the dangerous part: there x -> p(x) - p(0) has a stable fixed
    point at 0 and an unstable one at 0.5/0.2334 ~ 2.14, and any value beyond it
    compounds through the squares block after block, so the stream's spread is kept
    small (std ~1.15 gamma_res).  Returns the largest |pre-activation| on the
    calibration inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    model.eval()
    pairs = []  # (bn, the activation it feeds)
    pairs.append((model.bn1, model.act1))
    res_bns = set()
    for layer in (model.layer1, model.layer2, model.layer3):
        for blk in layer:
            pairs += [(blk.bn1, blk.act1), (blk.bn2, blk.act2)]
            res_bns.add(blk.bn2)
    for bn, act in pairs:
        scale = gamma_res if bn in res_bns else gamma
        bn.weight.copy_(scale * (0.75 + 0.5 * torch.rand(bn.weight.shape, generator=g)))
        bn.bias.zero_()
        bn.momentum = None  # cumulative average: one batch -> its exact statistics
        bn.reset_running_stats()
        bn.train()
        model(x)
        bn.eval()
        act.record = True
        model(x)
        bn.bias.sub_(act.pre.mean(dim=(0, 2, 3)))
        act.record, act.pre = False, None
    model.set_record(True)
    model(x)
    mx = max(float(p.abs().max()) for p in model.preacts())
    model.set_record(False)
    return mx


# Published ONNX name -> the state dict it is exported from: the best trained model of
# each lineage (docs/ACCURACY.md, "Published models").  The compiler's tests, benchmarks
# and README commands use these names.  A name whose best state dict does not exist yet
# stays the first-cycle model of the same name.
PUBLISHED = {
    "resnet20_quad": "resnet20_quad_c3kd",
    "resnet32_quad": "resnet32_quad_c10kd324456",
    "resnet20_quad_seed1": "resnet20_quad_seed1_c3kd32",
    "resnet20_quad_seed2": "resnet20_quad_seed2_c2kd",
    "resnet20_quad_seed3": "resnet20_quad_seed3_c2kd",
}


def published_source(name):
    """The state-dict stem the published ONNX `name` is exported from (None: not published
    or its best model is not trained yet)."""
    src = PUBLISHED.get(name)
    return src if src and (WEIGHTS_DIR / f"{src}.pt").exists() else None


def resnet_specs():
    """(onnx-name, depth, act, weights-or-None)."""
    specs = [("resnet20_relu", 20, "relu", "shared"), ("resnet32_relu", 32, "relu", "shared")]
    specs += [("resnet20_quad_random", 20, "quad", None), ("resnet32_quad_random", 32, "quad", None)]
    for p in sorted(WEIGHTS_DIR.glob("resnet*_quad*.pt")):
        # resnet20_quad, resnet20_quad_seed1, resnet20_quad_c2, resnet20_quad_seed1_c2kd ...
        # (not the no-penalty ablation, which overflows outside its training range)
        m = re.fullmatch(r"resnet(\d+)_quad(_[a-z0-9]+)*", p.stem)
        if m and int(m.group(1)) in rc.DEPTHS and "nopen" not in p.stem:
            depth = int(m.group(1))
            src = published_source(p.stem)
            if src:
                specs.append((p.stem, depth, "quad", WEIGHTS_DIR / f"{src}.pt"))
                specs.append((f"{p.stem}_c1", depth, "quad", p))
            else:
                specs.append((p.stem, depth, "quad", p))
    return specs


def export_resnets(only=None):
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    specs = resnet_specs()
    if only:
        unknown = set(only) - {s[0] for s in specs}
        if unknown:
            raise SystemExit(f"--only: no such ResNet {sorted(unknown)}; known: {[s[0] for s in specs]}")
        specs = [s for s in specs if s[0] in only]
    for name, depth, act, weights in specs:
        torch.manual_seed(1000 + depth)
        model = rc.build(depth, act, weights)
        if weights is None:
            mx = calibrate_random_quad(model, seed=depth)
            print(f"{name}: random weights, calibrated; max |pre-activation| on the "
                  f"calibration inputs {mx:.3g}")
        else:
            print(f"{name}: weights {weights if weights == 'shared' else Path(weights).name}")
        model.eval()
        if act == "quad" and weights is not None:
            # A trained quadratic net is only well-behaved on in-distribution inputs
            # (random noise can push activation inputs outside [-2, 2] and blow up):
            # check it on golden test image 0 instead.
            from PIL import Image
            png = sorted((REPO_ROOT / "tests" / "data" / "cifar10").glob("cifar10_00_*.png"))[0]
            img = np.asarray(Image.open(png).convert("RGB"), dtype=np.uint8)[None]
            x = rc.normalise(torch.from_numpy(img.copy()))
        else:
            x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
        for suffix, fn in (("", export_torchscript), ("_dynamo", export_dynamo)):
            path = ONNX_DIR / f"{name}{suffix}.onnx"
            fn(model, x, path, rc.MEAN, rc.STD)
            check_against_torch(model, path, x, tol=1e-4)


# ---------------------------------------------------------------------------------
# Tiny test models
# ---------------------------------------------------------------------------------
class PolyStd(nn.Module):
    """c2*x*x + c1*x + c0"""
    def forward(self, x):
        return C2 * x * x + C1 * x + C0


class PolyHorner(nn.Module):
    """(c2*x + c1)*x + c0"""
    def forward(self, x):
        return (C2 * x + C1) * x + C0


class PolyPow(nn.Module):
    """c0 + c1*x + c2*Pow(x, 2)"""
    def forward(self, x):
        return C0 + C1 * x + C2 * torch.pow(x, 2)


class Square(nn.Module):
    """x*x"""
    def forward(self, x):
        return x * x


class TinyResidual1x1(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = PolyStd()
        self.conv2 = nn.Conv2d(4, 4, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.short = nn.Conv2d(2, 4, 1, 1, 0, bias=False)
        self.short_bn = nn.BatchNorm2d(4)
        self.act2 = PolyHorner()

    def forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.short_bn(self.short(x)))


class TinyGemmHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 1, 1)
        self.act = Square()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.act(self.conv(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class TinyPreActMean(nn.Module):
    """A pre-activation residual whose skip is the stem conv's raw output, scaled by a
    scalar (0.5 * x), the sum not activated; then x.mean((2, 3)) (ReduceMean without
    keepdims: already (N, C)) and a linear head, so a conv feeds the pool and the Gemm."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = PolyStd()
        self.conv1 = nn.Conv2d(4, 4, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.act2 = PolyPow()
        self.conv2 = nn.Conv2d(4, 4, 3, 1, 1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.conv2(self.act2(self.bn2(self.conv1(self.act1(self.bn1(x))))))
        return self.fc((0.5 * x + y).mean((2, 3)))


class TinyLinearChain(nn.Module):
    """Plaintext products with no activation between them: conv -> BN -> conv, then
    (after one activation) conv -> mean -> Linear -> Linear."""
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, 1, 1)
        self.act = PolyStd()
        self.conv3 = nn.Conv2d(4, 4, 3, 1, 1)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 10)

    def forward(self, x):
        x = self.act(self.conv2(self.bn1(self.conv1(x))))
        return self.fc2(self.fc1(self.conv3(x).mean((2, 3))))


def tiny_specs():
    """name -> (constructor, input shape); constructed after seeding, so re-export is
    reproducible."""
    return {
        "tiny_conv": (lambda: nn.Conv2d(3, 4, 3, 1, 1), (1, 3, 8, 8)),
        "tiny_conv_bn_act": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=False),
                                                   nn.BatchNorm2d(4), PolyStd()), (1, 3, 8, 8)),
        "tiny_residual_1x1": (TinyResidual1x1, (1, 2, 8, 8)),
        "tiny_strided": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, 2, 1), nn.BatchNorm2d(4),
                                               PolyPow()), (1, 2, 8, 8)),
        "tiny_gemm_head": (TinyGemmHead, (1, 3, 8, 8)),
        "tiny_mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16),
                                           Square(), nn.Linear(16, 10)), (1, 2, 4, 4)),
        "tiny_lola": (lambda: nn.Sequential(nn.Conv2d(1, 5, 2, 2, 0), nn.BatchNorm2d(5), Square(),
                                            nn.Flatten(), nn.Linear(980, 100), nn.BatchNorm1d(100),
                                            Square(), nn.Linear(100, 10)), (1, 1, 28, 28)),
        # Orion's MLP example (784 -> 128 -> 128 -> 10 with BN and x * x).
        "orion_mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.BatchNorm1d(128),
                                            Square(), nn.Linear(128, 128), nn.BatchNorm1d(128),
                                            Square(), nn.Linear(128, 10)), (1, 1, 28, 28)),
        "tiny_preact_mean": (TinyPreActMean, (1, 3, 8, 8)),
        "tiny_linear_chain": (TinyLinearChain, (1, 3, 8, 8)),
    }


@torch.no_grad()
def randomise_bn(module, g):
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def save_tensor(arr: np.ndarray, name: str, path: Path):
    path.write_bytes(numpy_helper.from_array(np.ascontiguousarray(arr), name).SerializeToString())


def export_tiny():
    TINY_DIR.mkdir(parents=True, exist_ok=True)
    for i, (name, (make, shape)) in enumerate(tiny_specs().items()):
        torch.manual_seed(100 + i)
        module = make()
        g = torch.Generator().manual_seed(200 + i)
        randomise_bn(module, g)
        module.eval()
        x = torch.rand(shape, generator=g) * 2 - 1
        path = TINY_DIR / f"{name}.onnx"
        export_torchscript(module, x, path)
        check_against_torch(module, path, x, tol=1e-5)
        y = ort_run(path, x.numpy())
        save_tensor(x.numpy(), "input", TINY_DIR / f"{name}_input.pb")
        save_tensor(y, "logits", TINY_DIR / f"{name}_output.pb")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="only the tiny test models")
    ap.add_argument("--resnets", action="store_true", help="only the ResNets")
    ap.add_argument("--only", default="",
                    help="comma-separated ResNet names to export (e.g. resnet20_quad); implies --resnets")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = [n for n in args.only.split(",") if n]
    if not args.resnets and not only:
        export_tiny()
    if not args.tiny:
        export_resnets(only)


if __name__ == "__main__":
    sys.exit(main())
