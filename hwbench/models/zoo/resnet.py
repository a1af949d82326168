"""A bottleneck ResNet in plain torch (torchvision cannot be imported beside the CPU torch here).

Layer layout follows ResNet v1.5 (He et al. 2016; the stride sits on the 3x3 conv),
so ResNet-50 has the usual 25.56 M parameters. Weights are random but shaped so that
activations keep a unit-order scale through all blocks in eval mode, and batch-norm
statistics are not the identity, so runtimes that fold batch norm are exercised.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hwbench.models.zoo import ResNetConfig


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, plus a projection shortcut where shapes change."""

    def __init__(self, in_ch: int, mid: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max pool), four bottleneck stages, global average pool, linear head."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        w = cfg.base_width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        in_ch = w
        for stage, n_blocks in enumerate(cfg.blocks):
            mid = w * 2**stage
            out = mid * cfg.expansion
            blocks = []
            for i in range(n_blocks):
                stride = 2 if i == 0 and stage > 0 else 1
                blocks.append(Bottleneck(in_ch, mid, out, stride))
                in_ch = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, cfg.num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(pixel_values))
        return self.fc(torch.flatten(self.pool(x), 1))


def _init(model: ResNet) -> None:
    """Variance-keeping random weights: He-normal convs, jittered batch norms, damped residual branches."""
    n_blocks = sum(len(s) for s in model.stages)  # type: ignore[arg-type]
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)
                m.running_mean.normal_(0.0, 0.05)
                m.running_var.uniform_(0.8, 1.2)
    for m in model.modules():
        if isinstance(m, Bottleneck):
            with torch.no_grad():  # keep the residual stream's variance bounded over many blocks
                m.bn3.weight.mul_(1.0 / math.sqrt(n_blocks))


def build(cfg: ResNetConfig) -> ResNet:
    """A ResNet with random weights drawn from the current torch RNG (seeded by the caller)."""
    model = ResNet(cfg)
    _init(model)
    return model
