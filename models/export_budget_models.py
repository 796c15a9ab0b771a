"""Export the random-weight models used only for level-budget golden tests.

  * models/onnx/vgg16_quad_random.onnx   VGG-16 (cfg D, BN after every conv, AvgPool
    instead of MaxPool, 512-512-10 classifier), quadratic activations
  * models/onnx/resnet18_quad_random.onnx CIFAR ResNet-18 (3x3 stem, no max-pool, four
    stages of two BasicBlocks, 1x1 conv + BN shortcuts), quadratic activations

32x32 inputs, random weights (seeded), TorchScript exporter, opset 13,
do_constant_folding=False (keeps BN nodes). Level budgets do not depend on weights.

Run: models/.venv/bin/python models/export_budget_models.py
"""

import io
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn

import resnet_cifar as rc

OUT = Path(__file__).resolve().parent / "onnx"


def act():
    return rc.QuadAct()


class VGG16(nn.Module):
    CFG = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P",
           512, 512, 512, "P"]

    def __init__(self, classes=10):
        super().__init__()
        layers, c = [], 3
        for v in self.CFG:
            if v == "P":
                layers.append(nn.AvgPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), act()]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(512, 512), act(), nn.Linear(512, 512), act(),
                                        nn.Linear(512, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = act()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = act()
        blocks, c = [], 64
        for i, w in enumerate([64, 128, 256, 512]):
            for j in range(2):
                blocks.append(Block(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(512, classes)

    def forward(self, x):
        y = self.layers(self.act1(self.bn1(self.conv1(x))))
        y = nn.functional.adaptive_avg_pool2d(y, 1)
        return self.linear(torch.flatten(y, 1))


def randomise_bn(module, g):
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean.data = 0.1 * torch.randn(n, generator=g)
            m.running_var.data = 0.5 + torch.rand(n, generator=g)


def export(module, path):
    module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 32, 32),), buf, dynamo=False,
                          opset_version=13, do_constant_folding=False,
                          input_names=["input"], output_names=["logits"])
    model = onnx.load_from_string(buf.getvalue())
    model.doc_string = ""
    for n in model.graph.node:
        n.doc_string = ""
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"wrote {path} ({len(model.graph.node)} nodes)")


def main():
    OUT.mkdir(exist_ok=True)
    for name, cls, seed in (("vgg16", VGG16, 16), ("resnet18", ResNet18, 18)):
        torch.manual_seed(seed)
        m = cls()
        randomise_bn(m, torch.Generator().manual_seed(seed))
        export(m, OUT / f"{name}_quad_random.onnx")


if __name__ == "__main__":
    main()
