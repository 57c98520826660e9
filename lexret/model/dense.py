"""Dense CLIP-style baseline on the same frozen backbones: pooled EfficientNet-Lite features and MiniLM
mean-pooled token states, each through an MLP projection head to a shared L2-normalised space."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DenseModelConfig:
    image_in: int = 1280
    text_in: int = 384
    hidden: int = 1024
    dim: int = 256
    dropout: float = 0.1
    init_temperature: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(d_in), nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(states.dtype).unsqueeze(-1)
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)


class DenseModel(nn.Module):
    def __init__(self, cfg: DenseModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_mlp = _mlp(cfg.image_in, cfg.hidden, cfg.dim, cfg.dropout)
        self.text_mlp = _mlp(cfg.text_in, cfg.hidden, cfg.dim, cfg.dropout)
        self.log_inv_temp = nn.Parameter(torch.tensor(float(-torch.log(torch.tensor(cfg.init_temperature)))))

    def encode_pooled_image(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_mlp(pooled), dim=-1)

    def encode_pooled_text(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_mlp(pooled), dim=-1)

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        return self.encode_pooled_image(patches.mean(1))

    def encode_text_states(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encode_pooled_text(mean_pool(states, mask))

    def temperature(self) -> torch.Tensor:
        return torch.exp(-self.log_inv_temp.clamp(0.0, 4.6))
