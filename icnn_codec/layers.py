"""Bijections on integer tensors, each with ``forward`` and ``inverse``.

Every layer maps integers to integers exactly: a squeeze only moves values, a channel flip
only reorders them, an additive coupling adds an integer translation computed from the half it
leaves untouched. The same code runs the training path (float32, straight-through rounding)
and the exact path (float64 holding integers), see :mod:`icnn_codec.quant`.
"""
from __future__ import annotations

import torch
from torch import nn

from .quant import HIDDEN_FRAC, QConv2d, QNet

TRANSLATION_LIMIT = 2.0**15  # a coupling moves a latent by at most this much


class Transform(nn.Module):
    """An invertible map between integer tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Squeeze(Transform):
    """Space to depth: (B, C, H, W) -> (B, 4C, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        y = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c4 // 4, h * 2, w * 2)


class ChannelFlip(Transform):
    """Reverse the channel order: the fixed channel mixing between couplings."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, dims=[1])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.flip(y, dims=[1])


def translation_head(c_in: int, c_out: int, in_frac: int) -> QConv2d:
    """Output layer of a coupling network: integer translations, zero-initialised (ReZero-like:
    every coupling starts as the identity). Its weights are split (13 bits): a head's precision matters."""
    return QConv2d(c_in, c_out, 3, in_frac, 0, -TRANSLATION_LIMIT, TRANSLATION_LIMIT, zero_init=True, split=True)


class AdditiveCoupling(Transform):
    """(x_a, x_b) -> (x_a, x_b + round(NN(x_a))): exactly invertible on integers."""

    def __init__(self, channels: int, hidden: int, kernels: list[int]) -> None:
        super().__init__()
        self.split = channels // 2
        self.net = QNet(self.split, hidden, kernels, translation_head(hidden, channels - self.split, HIDDEN_FRAC))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        return torch.cat([x_a, x_b + self.net(x_a)], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        return torch.cat([y_a, y_b - self.net(y_a)], dim=1)


class Sequential(Transform):
    """Composition of transforms; inverse runs them backwards."""

    def __init__(self, transforms: list[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for t in reversed(self.transforms):
            y = t.inverse(y)
        return y
