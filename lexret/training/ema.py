"""Exponential moving average of a model's weights, used for validation and the saved checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightEMA:
    """Shadow copy of ``model``'s floating-point parameters, ``s <- d * s + (1 - d) * p`` each step.

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` so the early, fast-moving weights do not
    dominate the average. Buffers are not averaged: they are taken from the live model.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach(), 1.0 - d)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged parameters in place of the live ones."""
        return {k: self.shadow.get(k, v).detach().clone() for k, v in model.state_dict().items()}

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        """Run the block with the averaged weights loaded into ``model``; restores the live ones after."""
        live = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.shadow}
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.shadow:
                    p.copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in live:
                        p.copy_(live[n])
