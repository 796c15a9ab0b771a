"""CIFAR ResNet family (ResNet-20/32/44/56) with a choice of activation.

Architecture (He et al. 2016, CIFAR variant, as in the shared pretrained weights):
3x3 conv 16 ch + BN + act; three stages of n BasicBlocks at 16/32/64 channels,
stride 2 at the first block of stages 2 and 3; "option A" shortcut
(x[:, :, ::2, ::2] plus zero channel padding); global average pool; linear.
n = 3, 5, 7, 9 for ResNet-20, 32, 44, 56.

Activations:
  * "relu": nn.ReLU.
  * "quad": one shared polynomial p(x) = 0.1884765625 + 0.5 x + 0.2333984375 x^2
    (least-squares fit to ReLU on [-2, 2], coefficients multiples of 2^-10) replacing
    every ReLU, including the one after each residual add.  In training mode the
    input is clamped to [-2, 2]; in eval mode it is not.  When recording is on, each
    activation keeps its (unclamped) input so the range penalty and range statistics
    can be computed.

Inputs: (N, 3, 32, 32) normalised with MEAN/STD (ImageNet constants on [0,1] pixels).
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# p(x) = (193 + 512 x + 239 x^2) / 1024
QUAD_C0 = 193 / 1024
QUAD_C1 = 512 / 1024
QUAD_C2 = 239 / 1024
QUAD_RANGE = 2.0

DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9}
SHARED_WEIGHTS = Path("/work/shared/weights")


class QuadAct(nn.Module):
    """p(x) = c0 + c1 x + c2 x^2, input clamped to [-B, B] in training mode only."""

    def __init__(self, c0=QUAD_C0, c1=QUAD_C1, c2=QUAD_C2, bound=QUAD_RANGE):
        super().__init__()
        self.c0, self.c1, self.c2, self.bound = c0, c1, c2, bound
        self.record = False
        self.pre = None  # last recorded pre-activation tensor

    def forward(self, x):
        if self.record:
            self.pre = x
        if self.training:
            x = torch.clamp(x, -self.bound, self.bound)
        return self.c2 * x * x + self.c1 * x + self.c0

    def extra_repr(self):
        return f"{self.c0} + {self.c1}*x + {self.c2}*x^2, train clamp [-{self.bound}, {self.bound}]"


class ReLUAct(nn.ReLU):
    """ReLU that can record its input like QuadAct (for range statistics)."""

    def __init__(self):
        super().__init__()
        self.record = False
        self.pre = None

    def forward(self, x):
        if self.record:
            self.pre = x
        return super().forward(x)


def make_act(kind: str) -> nn.Module:
    if kind == "relu":
        return ReLUAct()
    if kind == "quad":
        return QuadAct()
    raise ValueError(f"unknown activation {kind!r}")


class ShortcutA(nn.Module):
    """Option-A shortcut: stride-2 subsampling plus zero padding of channels."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, act):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_act(act)
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(planes // 4)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth=20, act="relu", num_classes=10):
        super().__init__()
        n = DEPTHS[depth]
        self.depth, self.act_kind = depth, act
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = make_act(act)
        blocks, in_planes = [], 16
        for stage, planes in enumerate((16, 32, 64)):
            layer = []
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layer.append(BasicBlock(in_planes, planes, stride, act))
                in_planes = planes
            blocks.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = blocks
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)

    # --- pre-activation recording -------------------------------------------------
    def acts(self):
        return [m for m in self.modules() if isinstance(m, (QuadAct, ReLUAct))]

    def set_record(self, on: bool):
        for m in self.acts():
            m.record = on
            m.pre = None

    def preacts(self):
        return [m.pre for m in self.acts() if m.pre is not None]


def shared_weights_path(depth: int) -> Path:
    hits = sorted(SHARED_WEIGHTS.glob(f"resnet{depth}-*.th"))
    if not hits:
        raise FileNotFoundError(f"no resnet{depth}-*.th in {SHARED_WEIGHTS}")
    return hits[0]


def load_state(model: nn.Module, state: dict):
    """Load a state dict (with or without `module.` prefix, with or without
    BN num_batches_tracked); every parameter and running statistic must be present."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model


def build(depth=20, act="relu", weights=None) -> ResNetCifar:
    """Build a model.  weights: None (random init), "shared" (the pretrained ReLU
    weights in /work/shared/weights), or a path to a .th/.pt file holding a state
    dict (bare or under `state_dict` / `model`)."""
    model = ResNetCifar(depth, act)
    if weights is None:
        return model
    path = shared_weights_path(depth) if weights == "shared" else Path(weights)
    return load_state(model, read_state_dict(path))


def read_state_dict(path) -> dict:
    """The state dict in a .th/.pt file: bare, or under `state_dict` / `model`."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(blob, dict) and "state_dict" in blob:
        return blob["state_dict"]
    if isinstance(blob, dict) and "model" in blob:
        return blob["model"]
    return blob


@torch.no_grad()
def rescale_relu_equivalent(model: ResNetCifar, t: float, s: float) -> ResNetCifar:
    """Rescale activation inputs in a way that leaves a ReLU network's function unchanged
    (ReLU(c x) = c ReLU(x) for c > 0), to start quadratic fine-tuning with
    pre-activations closer to [-2, 2]:
      * the residual stream (stem activation and every activation after a residual add,
        all joined by the shortcuts) is multiplied by t: stem bn1 and every block's bn2
        affine parameters times t, every block's conv1 weight and the linear weight / t;
      * the activation inside each block is multiplied by s: bn1 affine times s, conv2
        weight / s.
    BN running statistics are untouched (each conv's output scale is unchanged)."""
    model.bn1.weight *= t
    model.bn1.bias *= t
    for layer in (model.layer1, model.layer2, model.layer3):
        for b in layer:
            b.bn1.weight *= s
            b.bn1.bias *= s
            b.conv2.weight /= s
            b.bn2.weight *= t
            b.bn2.bias *= t
            b.conv1.weight /= t
    model.linear.weight /= t
    return model


def normalise(x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """uint8 (N,32,32,3) RGB -> float (N,3,32,32) normalised with MEAN/STD."""
    x = x_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std
