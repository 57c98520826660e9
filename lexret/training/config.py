"""Training configuration: dataclass defaults overridden by a YAML file (``kind: sparse|dense``)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lexret.errors import LexretError

# Flickr8k sits beside the repository (``../shared``) on the project's machines; ``--data`` overrides.
DEFAULT_DATA = "../shared/flickr8k/captions.jsonl"


def check_folds(folds: int, fold: int, where: str) -> None:
    """Cross-validation settings: ``folds`` 0 (off) or >= 2, and then ``0 <= fold < folds``."""
    if folds == 1 or folds < 0 or (folds > 1 and not 0 <= fold < folds):
        raise LexretError(f"{where}: cv_folds is 0 (off) or >= 2 with 0 <= cv_fold < cv_folds, not {folds}, {fold}")


def fold_order(n: int, folds: int, fold: int) -> tuple[Any, int]:
    """Items ``0..n-1`` reordered with fold ``fold`` last (item ``i`` is in fold ``i % folds``, the rule
    of ``cv_folds`` everywhere), and the number of items before it (the training items)."""
    import numpy as np

    idx = np.arange(n)
    held = idx % folds == fold
    return np.concatenate([idx[~held], idx[held]]), int((~held).sum())


@dataclass
class TrainConfig:
    kind: str = "sparse"
    name: str = ""
    model_id: str = ""
    data: str = DEFAULT_DATA
    train_split: str = "train"
    val_split: str = "val"
    cache_dir: str = ""  # default: <out>/../.feature-cache
    seed: int = 0
    threads: int = 2
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_minutes: float = 60.0
    # > 0: end the run after this epoch while keeping the learning-rate schedule of `epochs`: the run is
    # then the first stop_epoch epochs of the full one (an equal-budget prefix for ablations)
    stop_epoch: int = 0
    # learning-rate decay: "steps" (cosine over epochs x steps) or "minutes" (cosine over max_minutes of
    # wall time; training ends at the first epoch end past max_minutes, epochs is then an upper bound)
    schedule: str = "steps"
    eval_every: int = 1  # epochs
    limit_items: int = 0  # 0 = all (tests use a few)
    # training pairs: "image" (each epoch every image once, a random caption of it) or "caption"
    # (a shuffled stream of all training captions with their images; see training.train.PairSampler)
    pairs: str = "image"
    # ---- sparse losses
    w_contrastive: float = 1.0
    w_mlm: float = 0.5
    w_bow_image: float = 1.0  # max-pooled image logits predict the words of the image's captions
    w_bottleneck_i2t: float = 0.5
    w_bottleneck_t2t: float = 0.5
    w_flops_image: float = 1.0
    w_flops_text: float = 1.0
    flops_warmup_steps: int = 300
    flops_on_normalized: bool = True
    bottleneck: bool = True
    decoder_mask_prob: float = 0.6
    mlm_batch: int = 128
    w_mlm_identity: float = 0.5  # clean (unmasked) caption tokens predict their own wordpiece
    mlm_warmup_steps: int = 300  # text-head-only MLM steps before the image head is copied from it
    init_active_fraction: float = 0.01  # text-head bias shift after warm-up (0 = none)
    train_top_k_image: int = 64  # top-k inside the contrastive loss (0 = off)
    train_top_k_text: int = 32
    top_k_image: int = 64  # kept at inference
    top_k_text: int = 32
    normalize: bool = True  # score = cosine: vectors are L2-normalised after top-k
    output_scale: float = 5.0  # normalised vectors are multiplied by this for the quantizer's range
    min_term_count: int = 1
    # Distillation: a trained dense checkpoint (same train split) whose in-batch caption-image score
    # distributions the sparse scores are pulled towards (KL, both directions). "" = off.
    distill_from: str = ""
    w_distill: float = 0.0
    # ---- inference-free text side and posting-length-aware regularisers (issue 17; training.losses)
    # text vectors = a text's own active wordpieces x a learned per-term table initialised from IDF over
    # the training captions; no text network at query time (lexret.model.sparse.query_vectors)
    inference_free: bool = False
    # with inference_free, how caption *documents* (the image->text index) are encoded: "table" (the same
    # inference-free vectors as the queries) or "encoder" (the caption network, trained with its MLM losses:
    # documents are encoded offline, so the network costs nothing at query time); queries stay
    # inference-free either way, and the two directions are trained on their own score matrices
    caption_documents: str = "table"
    # df_flops: weight each term's FLOPS penalty (image side w_flops_image, text side w_flops_text) by
    # sigmoid(df_beta * (df - df_alpha)), df = the term's running document frequency in the training
    # images' top-k vectors (losses.DocFrequency, momentum df_momentum per step)
    df_flops: bool = False
    df_alpha: float = 0.02
    df_beta: float = 100.0
    df_momentum: float = 0.05
    # per-image budget: an L1 penalty (weight w_budget) on the mass beyond the doc_budget heaviest terms
    doc_budget: int = 0
    w_budget: float = 0.0
    # epoch selection: "val" (best val RSUM) or "last" (the final epoch; val is then only reported, so
    # it stays a held-out figure for settings fixed beforehand)
    select: str = "val"
    # cross-validation over the training images (model selection that never reads val): cv_folds > 1
    # holds out fold cv_fold of the training images (item i is in fold i % cv_folds) as the
    # validation set of the run, trains on the other folds, and leaves the val split untouched
    cv_folds: int = 0
    cv_fold: int = 0
    # ---- dense
    patch_drop: float = 0.0  # training augmentation: hide random patches (dense: from the mean pool)
    token_drop: float = 0.0  # sparse training augmentation: hide random caption tokens from the max pool
    # sparse training augmentation: mirror the patch grid left-right (close to the features of the
    # mirrored picture: mean cosine 0.89 on val images, against 0.49 unmirrored)
    patch_flip: float = 0.0
    # training augmentation (both kinds): features of `image_views` random-resized-crop/mirror views of
    # every training image are cached once (training.cache.image_views); each image in a batch is
    # replaced by one of its views with probability `view_prob`. 0 = off.
    image_views: int = 0
    view_prob: float = 0.5
    ema: float = 0.0  # > 0: validate and save an exponential moving average of the weights (decay)
    # ---- model
    # frozen image backbone (an id of lexret.model.backbones.IMAGE_BACKBONES): part of the trained
    # model; the sparse model's image positions (n_patches) and image_in follow it
    image_backbone: str = "efficientnet-lite0"
    model: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise LexretError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        cfg = cls()
        for f in fields(cls):
            if f.name in d:
                val = d[f.name]
                default = getattr(cfg, f.name)
                if isinstance(default, bool) and not isinstance(val, bool):
                    raise LexretError(f"{where}: {f.name} must be true/false, got {val!r}")
                if isinstance(default, int | float) and not isinstance(default, bool):
                    if not isinstance(val, int | float) or isinstance(val, bool):
                        raise LexretError(f"{where}: {f.name} must be a number, got {val!r}")
                    val = type(default)(val)
                setattr(cfg, f.name, val)
        if cfg.kind not in ("sparse", "dense"):
            raise LexretError(f"{where}: kind must be 'sparse' or 'dense', got {cfg.kind!r}")
        if cfg.pairs not in ("image", "caption"):
            raise LexretError(f"{where}: pairs must be 'image' or 'caption', got {cfg.pairs!r}")
        for name, top in (("patch_drop", 0.95), ("token_drop", 0.95), ("patch_flip", 1.0), ("view_prob", 1.0)):
            if not 0.0 <= getattr(cfg, name) <= top:
                raise LexretError(f"{where}: {name} is a probability in [0, {top}], got {getattr(cfg, name)}")
        if not 0 <= cfg.image_views <= 16:
            raise LexretError(f"{where}: image_views is a number of cached views in [0, 16], got {cfg.image_views}")
        if not 0.0 <= cfg.ema < 1.0:
            raise LexretError(f"{where}: ema is a decay in [0, 1) (0 = off), got {cfg.ema}")
        check_folds(cfg.cv_folds, cfg.cv_fold, where)
        if cfg.schedule not in ("steps", "minutes"):
            raise LexretError(f"{where}: schedule must be 'steps' or 'minutes', got {cfg.schedule!r}")
        if not 0 <= cfg.stop_epoch <= cfg.epochs:
            raise LexretError(f"{where}: stop_epoch is 0 (off) or an epoch in 1..{cfg.epochs}, got {cfg.stop_epoch}")
        if cfg.caption_documents not in ("table", "encoder"):
            raise LexretError(f"{where}: caption_documents must be 'table' or 'encoder', got {cfg.caption_documents!r}")
        if cfg.caption_documents == "encoder" and not cfg.inference_free:
            raise LexretError(f"{where}: caption_documents: encoder is an option of inference_free models")
        if cfg.select not in ("val", "last"):
            raise LexretError(f"{where}: select must be 'val' or 'last', got {cfg.select!r}")
        if cfg.w_budget > 0 and cfg.doc_budget < 1:
            raise LexretError(f"{where}: w_budget > 0 needs doc_budget: a number of terms per image")
        if cfg.inference_free and cfg.kind != "sparse":
            raise LexretError(f"{where}: inference_free applies to sparse models only")
        if cfg.w_distill > 0 and not cfg.distill_from:
            raise LexretError(f"{where}: w_distill > 0 needs distill_from: a dense checkpoint folder")
        from lexret.model.backbones import head_config, image_backbone_spec

        spec = image_backbone_spec(cfg.image_backbone, f"{where}: image_backbone")
        if not isinstance(cfg.model, dict):
            raise LexretError(f"{where}: model must be a mapping of option: value, got {cfg.model!r}")
        head_config(cfg.kind, cfg.model, spec.id, where)
        if not cfg.model_id:
            cfg.model_id = f"lexret-{cfg.kind}-{spec.tag}-minilm-v1"
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise LexretError(f"config file {p} not found")
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise LexretError(f"{p}: not valid YAML ({e})") from None
        if not isinstance(d, dict):
            raise LexretError(f"{p}: a config must be a mapping of option: value")
        d = cls._with_base(d, p, depth=0)
        cfg = cls.from_dict(d, str(p))
        if not cfg.name:
            cfg.name = p.stem
        return cfg

    @classmethod
    def _with_base(cls, d: dict[str, Any], p: Path, depth: int) -> dict[str, Any]:
        """``base: other.yaml`` (relative to this file) is read first and overridden by this file;
        ``model`` mappings are merged key by key."""
        import yaml

        base = d.pop("base", None)
        if base is None:
            return d
        if depth > 5:
            raise LexretError(f"{p}: 'base' chain is too deep (a cycle?)")
        bp = (p.parent / str(base)).resolve()
        if not bp.is_file():
            raise LexretError(f"{p}: base config {bp} not found")
        b = yaml.safe_load(bp.read_text(encoding="utf-8")) or {}
        b = cls._with_base(dict(b), bp, depth + 1)
        model = {**b.get("model", {}), **d.get("model", {})}
        merged = {**b, **d}
        if model:
            merged["model"] = model
        return merged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **kw: Any) -> TrainConfig:
        return dataclasses.replace(self, **kw)


@dataclass
class QueryMapConfig:
    """Settings of ``lexret train-queries`` (:mod:`lexret.training.query_map`); defaults chosen on dev images."""

    documents: str = "lexret/checkpoints/sparse"  # checkpoint folder whose networks encode the documents
    data: str = ""  # captions JSONL (lexret.data)
    train_split: str = "train"
    val_split: str = "val"  # only so that the feature cache is lexret train's (val is never read)
    cache_dir: str = ""  # feature cache root (default: beside --out, as lexret train)
    model_id: str = ""
    dev_items: int = 1000  # last training images held out for the per-epoch figures (0: train on all)
    # cross-validation as lexret train's: cv_folds > 1 holds out training image i when i % cv_folds == cv_fold
    # (those images are the dev images, in place of the last dev_items; dev_items must then be 0)
    cv_folds: int = 0
    cv_fold: int = 0
    limit_items: int = 0  # first N training items only (tests, smoke runs)
    epochs: int = 3
    batch_size: int = 512
    lr: float = 1e-2
    temperature: float = 0.05
    w_contrastive: float = 1.0
    w_distill: float = 1.0
    w_df: float = 1.0
    df_floor: float = 0.0  # the posting penalty counts a term as held by at least this share of the images
    expansion: bool = True  # False: the map is diagonal (a caption's own words with learned weights)
    top_k_text: int = 16  # terms kept per query
    per_row: int = 32  # terms kept per wordpiece row of the stored map
    image_terms: bool = False  # learn a per-term scale and offset on the images: relu(a_t w - b_t) (pruning)
    w_i2t: float = 1.0  # with image_terms: weight of image->caption-document contrastive + distillation
    w_image_df: float = 0.0  # with image_terms: weight of sum_t df_t w_it over images (their postings)
    df_cap: float = 0.0  # > 0: images keep each term only in their top df_cap share (lexret.model.df_cap)
    w_presence: float = 0.0  # with image_terms: weight of the term-presence loss (an image's heaviest content
    # terms should be its captions' wordpieces; losses.presence_ce over the image's terms; 0: off)
    presence_temperature: float = 0.05  # softmax temperature of that loss, in normalised-weight units
    seed: int = 0
    threads: int = 0  # torch threads (0: all cores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
