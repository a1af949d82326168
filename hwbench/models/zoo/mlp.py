"""A plain multi-layer perceptron: the smallest, most GEMM-bound reference model."""

from __future__ import annotations

import torch
from torch import nn

from hwbench.models.zoo import MlpConfig


class Mlp(nn.Module):
    """Linear + ReLU for each hidden width, then a linear head; input named `features`."""

    def __init__(self, cfg: MlpConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = cfg.in_features
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, cfg.num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features))


def build(cfg: MlpConfig) -> Mlp:
    """An MLP with He-normal weights and small random biases from the current torch RNG."""
    model = Mlp(cfg)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, 0.0, 0.05)
    return model
