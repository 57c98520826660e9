"""Checkpoint folders: heads only (no backbone weights, no embedding matrix).

Layout::

    model.safetensors   head weights (+ the ``active`` term ids of a sparse model)
    config.json         the full training config (kind, image backbone, model hyper-parameters, top-k)
    model_id            e.g. ``lexret-sparse-lite0-minilm-v1``
    vocab_hash          hash of the vocabulary naming the sparse dimensions
    metrics.json        val metrics of the selected epoch
    history.json        per-epoch losses and val metrics
    curves.png          training curves

An *ensemble* folder (``lexret ensemble``; ``lexret.model.ensemble``) holds no weights of its own:
its ``config.json`` has an ``ensemble`` entry listing member checkpoint folders (relative to it,
under ``members/``) with their weights, beside the ensemble's own ``model_id``, top-k and output
scale. Members written by :func:`save_ensemble` are inference-only: float16 weights, without the
weak decoder that only training uses (``inference_only`` in their config).

A *query-map* folder (``lexret train-queries``; :mod:`lexret.model.query_map`) holds no network
either: ``query_map.safetensors`` encodes caption queries, and its ``config.json`` entry
``query_map`` names the checkpoint folder (relative to it) and model id whose networks encode the
documents (:func:`documents_folder`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
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
    if not (p / "config.json").is_file():
        raise LexretError(f"{p} is not a lexret checkpoint folder (needs config.json and {WEIGHTS})")
    try:
        cfg = json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise LexretError(f"{p / 'config.json'} is not readable JSON ({e}); restore the checkpoint folder") from e
    if "ensemble" not in cfg and "query_map" not in cfg and not (p / WEIGHTS).is_file():
        raise LexretError(f"{p} is not a lexret checkpoint folder (needs config.json and {WEIGHTS})")
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
    if "query_map" in cfg:  # inference-free queries over another model's documents: that model runs the rest
        return load_model(documents_folder(Path(path), cfg))[0], cfg
    if "ensemble" in cfg:
        return _load_ensemble(Path(path), cfg), cfg
    heads = head_config(cfg["kind"], cfg.get("model", {}), cfg["image_backbone"], str(Path(path) / "config.json"))
    state = load_file(str(Path(path) / WEIGHTS))
    if cfg["kind"] == "sparse":
        from lexret.model.sparse import SparseLexModel, SparseModelConfig

        heads["inference_free"] = bool(cfg.get("inference_free")) or bool(heads.get("inference_free"))
        heads["encoded_documents"] = cfg.get("caption_documents") == "encoder" or bool(heads.get("encoded_documents"))

        model = SparseLexModel(SparseModelConfig(**heads), word_embeddings(), state["active"])
    else:
        from lexret.model.dense import DenseModel, DenseModelConfig

        model = DenseModel(DenseModelConfig(**heads))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise LexretError(
            f"{Path(path) / WEIGHTS} does not match its config.json: {str(e).splitlines()[-1].strip()}"
        ) from e
    if cfg.get("inference_only"):  # written by save_ensemble: the training-only decoder was left out
        missing = [k for k in missing if not k.startswith("decoder.")]
    if missing or unexpected:
        raise LexretError(
            f"{Path(path) / WEIGHTS} does not match its config.json (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); the checkpoint folder is damaged or was written by another lexret version"
        )
    return model.eval(), cfg


def documents_folder(path: Path, cfg: dict[str, Any]) -> Path:
    """The checkpoint folder whose networks encode this model's documents: the folder itself, or for a
    query-map model (``lexret train-queries``) the folder its ``query_map.documents`` names (relative to
    it), which must hold the model ``query_map.documents_model_id``."""
    spec = cfg.get("query_map")
    if spec is None:
        return Path(path)
    where = Path(path) / "config.json"
    if not isinstance(spec, dict) or not isinstance(spec.get("documents"), str) or not spec.get("documents_model_id"):
        raise LexretError(f"{where}: query_map needs 'documents' (a checkpoint folder) and 'documents_model_id'")
    base = (Path(path) / spec["documents"]).resolve()
    if not (base / "config.json").is_file():
        raise LexretError(
            f"{where}: the documents' model {spec['documents']!r} ({spec['documents_model_id']}) is not at {base}; "
            "keep the query-map folder beside it or rewrite query_map.documents"
        )
    base_cfg = read_config(base)
    if base_cfg.get("model_id") != spec["documents_model_id"] or "query_map" in base_cfg:
        raise LexretError(
            f"{where}: {base} holds {base_cfg.get('model_id')!r}, the query map was trained on "
            f"{spec['documents_model_id']!r}; retrain it (lexret train-queries) or point query_map.documents "
            "at that model"
        )
    return base


def _load_ensemble(path: Path, cfg: dict[str, Any]):
    from lexret.model.ensemble import SparseEnsemble

    where = path / "config.json"
    spec = cfg["ensemble"]
    entries = spec.get("members") if isinstance(spec, dict) else None
    if cfg["kind"] != "sparse" or not entries:
        raise LexretError(f"{where}: an ensemble is a sparse model with at least one entry in ensemble.members")
    want_hash = _vocab_hash(path)
    models, weights, k_img, k_txt = [], [], [], []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise LexretError(f"{where}: each entry of ensemble.members needs a 'path' (a folder under {path})")
        sub = path / e["path"]
        if not sub.resolve().is_relative_to(path.resolve()):
            raise LexretError(f"{where}: member {e['path']!r} lies outside the ensemble folder")
        mcfg = read_config(sub)
        if mcfg["kind"] != "sparse" or "ensemble" in mcfg:
            raise LexretError(f"{where}: member {sub} is not a single sparse model")
        if mcfg["image_backbone"] != cfg["image_backbone"]:
            raise LexretError(
                f"{where}: member {sub} runs on {mcfg['image_backbone']}, the ensemble on {cfg['image_backbone']}; "
                "members must share the image backbone"
            )
        if want_hash and _vocab_hash(sub) not in (None, want_hash):
            raise LexretError(f"{where}: member {sub} was trained with another vocabulary than the ensemble names")
        models.append(load_model(sub)[0])
        weights.append(float(e.get("weight", 1.0)))
        k_img.append(int(mcfg.get("top_k_image", 64)))
        k_txt.append(int(mcfg.get("top_k_text", 32)))
    return SparseEnsemble(models, weights, k_img, k_txt).eval()


def _vocab_hash(path: Path) -> str | None:
    f = Path(path) / "vocab_hash"
    return f.read_text().strip() if f.is_file() else None


def export_inference_checkpoint(src: Path, dst: Path, model_id: str) -> None:
    """Copy a single sparse checkpoint for inference only: float16 weights, no weak decoder (about
    45% of the float32 size). ``model_id`` names the copy: its vectors differ from the original's by
    float16 rounding, so it must not pass for it."""
    import torch
    from safetensors.torch import load_file, save_file

    cfg = read_config(src)
    if cfg["kind"] != "sparse" or "ensemble" in cfg:
        raise LexretError(f"{src}: only a single sparse model can be an ensemble member")
    state = load_file(str(Path(src) / WEIGHTS))
    keep = {
        k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
        for k, v in state.items()
        if not k.startswith("decoder.")
    }
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    save_file(keep, str(dst / WEIGHTS), metadata={"model_id": model_id, "kind": "sparse"})
    if not cfg.get("inference_only"):
        cfg["exported_from"] = cfg.get("model_id", "")
    cfg.update(model_id=model_id, inference_only=True)
    (dst / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    (dst / "model_id").write_text(model_id + "\n")
    for name in ("vocab_hash", "metrics.json", "history.json", "curves.png"):
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, dst / name)


def save_ensemble(
    out: Path,
    members: Sequence[Path],
    model_id: str,
    weights: Sequence[float] | None = None,
    top_k_image: int | None = None,
    top_k_text: int | None = None,
) -> dict[str, Any]:
    """Write an ensemble folder of inference-only copies of ``members`` (sparse checkpoint folders on
    one image backbone and vocabulary). Top-k defaults to the first member's. Returns its config."""
    from lexret.vocab import default_vocabulary

    cfgs = [read_config(m) for m in members]
    if not cfgs:
        raise LexretError("an ensemble needs at least one member")
    weights = [1.0] * len(cfgs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(cfgs) or min(weights) <= 0:
        raise LexretError(f"give one positive weight per member ({len(cfgs)}), got {weights}")
    backbones = {c["image_backbone"] for c in cfgs}
    if len(backbones) > 1:
        raise LexretError(f"members must share the image backbone, got {sorted(backbones)}")
    vocab = default_vocabulary().hash
    for src, c in zip(members, cfgs):
        if c["kind"] != "sparse" or "ensemble" in c:
            raise LexretError(f"{src}: only a single sparse model can be an ensemble member")
        if _vocab_hash(Path(src)) not in (None, vocab):
            raise LexretError(f"{src} was trained with another vocabulary than this install's ({vocab})")
    out = Path(out)
    if out.exists():
        raise LexretError(f"{out} exists; choose a new folder (an ensemble is never written over another)")
    tmp = out.with_name(out.name + ".tmp")  # renamed into place when complete
    shutil.rmtree(tmp, ignore_errors=True)
    entries = []
    try:
        for src, c, w in zip(members, cfgs, weights):
            name = f"members/{len(entries) + 1}-{c['model_id']}"
            copy_id = c["model_id"] if c.get("inference_only") else c["model_id"] + "-fp16"
            export_inference_checkpoint(Path(src), tmp / name, copy_id)
            entries.append({"path": name, "weight": w, "model_id": copy_id})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    first = cfgs[0]
    cfg = {
        "kind": "sparse",
        "model_id": model_id,
        "ensemble": {"members": entries},
        "image_backbone": first["image_backbone"],
        "top_k_image": int(first.get("top_k_image", 64) if top_k_image is None else top_k_image),
        "top_k_text": int(first.get("top_k_text", 32) if top_k_text is None else top_k_text),
        "normalize": True,
        "output_scale": float(first.get("output_scale", 5.0)),
    }
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    (tmp / "model_id").write_text(model_id + "\n")
    (tmp / "vocab_hash").write_text(vocab + "\n")
    tmp.rename(out)
    return cfg
