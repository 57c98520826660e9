"""Several sparse models fused in term space (one vector per item, same budget as one model).

All members write into the same 30,522-wordpiece space, so their vectors can be added: each
member's vector is pruned to its own top-k, L2-normalised, weighted and summed; the encoder then
prunes the sum to the ensemble's top-k as for any single model. The fused vector costs what a
single model's costs at search time (the same number of terms), unlike a dense ensemble, whose
dimensions add up. Members must share the frozen backbones, which run once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lexret.model.sparse import SparseLexModel


def prune_normalize(vecs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest positive entries of each row (``k <= 0``: all), then L2-normalise the row."""
    if 0 < k < vecs.shape[1]:
        top = torch.topk(vecs, k, dim=1)
        vecs = torch.zeros_like(vecs).scatter_(1, top.indices, top.values)
    vecs = torch.relu(vecs)
    return vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-12)


class SparseEnsemble(nn.Module):
    """Members' pruned, normalised vectors summed with ``weights`` over the union of their terms."""

    def __init__(
        self,
        members: Sequence[SparseLexModel],
        weights: Sequence[float],
        top_k_image: Sequence[int],
        top_k_text: Sequence[int],
    ) -> None:
        super().__init__()
        if not members or not len(members) == len(weights) == len(top_k_image) == len(top_k_text):
            raise ValueError("an ensemble needs one weight and one top-k per side for each of its members")
        self.members = nn.ModuleList(members)
        self.weights = [float(w) for w in weights]
        self.top_k_image = [int(k) for k in top_k_image]
        self.top_k_text = [int(k) for k in top_k_text]
        active = torch.unique(torch.cat([m.active for m in members]))  # sorted
        self.register_buffer("active", active, persistent=False)
        for i, m in enumerate(members):  # position of each member term in the union
            self.register_buffer(f"_pos{i}", torch.searchsorted(active, m.active), persistent=False)

    @property
    def n_terms(self) -> int:
        return int(self.active.numel())

    def _fuse(self, vecs: list[torch.Tensor], ks: list[int]) -> torch.Tensor:
        out = vecs[0].new_zeros((vecs[0].shape[0], self.n_terms))
        for i, (v, k, w) in enumerate(zip(vecs, ks, self.weights)):
            out.index_add_(1, getattr(self, f"_pos{i}"), prune_normalize(v, k) * w)
        return out

    def text_vectors(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MiniLM token states -> fused ``(B, n_terms)`` vectors (before the encoder's top-k)."""
        return self._fuse([m.text_vectors(states, mask) for m in self.members], self.top_k_text)

    def image_vectors(self, patches: torch.Tensor) -> torch.Tensor:
        """Frozen patch features -> fused ``(B, n_terms)`` vectors (before the encoder's top-k)."""
        return self._fuse([m.image_vectors(patches) for m in self.members], self.top_k_image)
