"""The classifier: in-model preprocessing plus a multi-layer perceptron built from config.

Preprocessing (non-finite -> 0, signed log1p, standardise with train-split statistics, clip)
is part of the module, so the network always sees raw features, exactly like the exported
ONNX graph that the daemon feeds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from .config import ModelConfig


def signed_log1p(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """sign(x) * log1p(|x|) with non-finite values mapped to 0 first.

    >>> signed_log1p(np.array([0.0, -np.e + 1, np.inf])).round(3).tolist()
    [0.0, -1.0, 0.0]
    """
    x = np.where(np.isfinite(x), x, 0.0)
    return np.sign(x) * np.log1p(np.abs(x))


class Preprocess(nn.Module):
    """Raw features -> clipped z-scores of their signed log."""

    def __init__(self, mean: npt.NDArray[np.float64], std: npt.NDArray[np.float64], clip: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.tensor(1.0 / std, dtype=torch.float32))
        self.clip = float(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
        z = (torch.sign(x) * torch.log1p(torch.abs(x)) - self.mean) * self.inv_std
        return torch.clamp(z, -self.clip, self.clip)


def fit_scaler(x_train: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    """Mean and std of the signed log of the training rows (std 1 for constant columns)."""
    lx = signed_log1p(x_train)
    mean = lx.mean(axis=0)
    std = lx.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


_ACT: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


class Classifier(nn.Module):
    """Preprocess -> [Linear -> norm -> activation -> dropout] x k -> Linear (logits)."""

    def __init__(self, pre: Preprocess, n_in: int, n_classes: int, cfg: ModelConfig):
        super().__init__()
        self.pre = pre
        layers: list[nn.Module] = []
        width = n_in
        for h in cfg.hidden:
            layers.append(nn.Linear(width, h))
            if cfg.norm == "batch":
                layers.append(nn.BatchNorm1d(h))
            elif cfg.norm == "layer":
                layers.append(nn.LayerNorm(h))
            layers.append(_ACT[cfg.activation]())
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.body = nn.Sequential(*layers)

    def logits_from_z(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.pre(x))


def attack_attributions(
    model: Classifier, x: torch.Tensor, *, benign: int, z_ref: torch.Tensor
) -> torch.Tensor:
    """Gradient x (input - benign reference) of the attack score 1 - P(benign), in z-space.

    This is the reference the exported ONNX attribution output is checked against.
    """
    z = model.pre(x).detach().requires_grad_(True)
    p = torch.softmax(model.logits_from_z(z), dim=1)
    score = (1.0 - p[:, benign]).sum()
    (g,) = torch.autograd.grad(score, z)
    inside = (z.abs() < model.pre.clip).to(g.dtype)  # the clip has zero gradient outside
    return (g * inside * (z - z_ref)).detach()
