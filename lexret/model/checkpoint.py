"""Checkpoint folders: heads only (no backbone weights, no embedding matrix).

Layout::

    model.safetensors   head weights (+ the ``active`` term ids of a sparse model)
    config.json         the full training config (kind, image backbone, model hyper-parameters, top-k)
    model_id            e.g. ``lexret-sparse-lite0-minilm-v1``
    vocab_hash          hash of the vocabulary naming the sparse dimensions
    metrics.json        val metrics of the selected epoch
    history.json        per-epoch losses and val metrics
    curves.png          training curves
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lexret.errors import LexretError

WEIGHTS = "model.safetensors"


def save_checkpoint(out: Path, model, cfg, metrics: dict, history: list[dict]) -> None:
    from safetensors.torch import save_file

    from lexret.vocab import default_vocabulary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"model_id": cfg.model_id, "kind": cfg.kind})
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    (out / "model_id").write_text(cfg.model_id + "\n")
    (out / "vocab_hash").write_text(default_vocabulary().hash + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_curves(history, out / "curves.png", cfg.kind)


def plot_curves(history: list[dict], path: Path, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    loss_keys = (
        [
            k
            for k in history[0]
            if k not in ("epoch", "step", "minutes", "temperature", "val", "total") and not k.startswith("nnz")
        ]
        if history
        else []
    )
    fig, axes = plt.subplots(1, 3 if kind == "sparse" else 2, figsize=(15 if kind == "sparse" else 10, 4))
    ax = axes[0]
    ax.plot(ep, [h["total"] for h in history], label="total", lw=2)
    for k in loss_keys:
        ax.plot(ep, [h[k] for h in history], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("training losses")
    ax.legend(fontsize=7)
    vals = [(h["epoch"], h["val"]) for h in history if "val" in h]
    ax = axes[1]
    ax.plot([e for e, _ in vals], [v["rsum"] for _, v in vals], marker="o", label="val RSUM")
    if kind == "sparse":
        ax.plot([e for e, _ in vals], [v["rsum_full"] for _, v in vals], marker=".", label="val RSUM (no top-k)")
    ax.set_xlabel("epoch")
    ax.set_title("val RSUM")
    ax.legend(fontsize=7)
    if kind == "sparse":
        ax = axes[2]
        ax.plot([e for e, _ in vals], [v["terms_per_image_full"] for _, v in vals], label="terms/image (no top-k)")
        ax.plot([e for e, _ in vals], [v["terms_per_caption_full"] for _, v in vals], label="terms/caption (no top-k)")
        ax.plot([e for e, _ in vals], [v["term_precision@10"] for _, v in vals], label="term precision@10 (%)")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title("sparsity and grounding (val)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def read_config(path: Path) -> dict[str, Any]:
    """The training config of a checkpoint folder. Checkpoints from before the image backbone was
    selectable have no ``image_backbone``: they were trained on EfficientNet-Lite0 and read as such."""
    from lexret.model.backbones import DEFAULT_IMAGE_BACKBONE, image_backbone_spec

    p = Path(path)
    if not (p / "config.json").is_file() or not (p / WEIGHTS).is_file():
        raise LexretError(f"{p} is not a lexret checkpoint folder (needs config.json and {WEIGHTS})")
    cfg = json.loads((p / "config.json").read_text())
    cfg.setdefault("image_backbone", DEFAULT_IMAGE_BACKBONE)
    image_backbone_spec(cfg["image_backbone"], f"{p / 'config.json'}: image_backbone")
    return cfg


def load_model(path: Path):
    """Build the model of a checkpoint folder and load its weights. Returns ``(model, config dict)``."""
    from safetensors.torch import load_file

    from lexret.model.backbones import head_config, word_embeddings

    cfg = read_config(path)
    if cfg["kind"] not in ("sparse", "dense"):
        raise LexretError(f"{path}: unknown model kind {cfg['kind']!r}")
    heads = head_config(cfg["kind"], cfg.get("model", {}), cfg["image_backbone"], str(Path(path) / "config.json"))
    state = load_file(str(Path(path) / WEIGHTS))
    if cfg["kind"] == "sparse":
        from lexret.model.sparse import SparseLexModel, SparseModelConfig

        model = SparseLexModel(SparseModelConfig(**heads), word_embeddings(), state["active"])
    else:
        from lexret.model.dense import DenseModel, DenseModelConfig

        model = DenseModel(DenseModelConfig(**heads))
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg
