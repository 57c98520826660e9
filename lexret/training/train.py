"""Training of the sparse lexicon model and the dense baseline on cached backbone features."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lexret.data import load_captions
from lexret.errors import LexretError
from lexret.model.backbones import head_config, word_embeddings
from lexret.model.dense import DenseModel, DenseModelConfig, mean_pool
from lexret.model.sparse import SparseLexModel, SparseModelConfig
from lexret.model.terms import active_terms
from lexret.text import is_content_term
from lexret.training.cache import FeatureCache, build_cache, image_views
from lexret.training.config import TrainConfig, fold_order
from lexret.training.ema import WeightEMA
from lexret.training.evaluate import (
    expected_flops,
    l2_normalize,
    prune_top_k,
    retrieval_metrics,
    term_precision,
    top_terms,
)
from lexret.training.losses import (  # noqa: F401  (info_nce, distill_loss, ...: kept importable from here)
    DocFrequency,
    budget_penalty,
    df_flops,
    df_weights,
    distill_directions,
    distill_loss,
    flops,
    idf_table,
    info_nce,
    info_nce_directions,
    mask_logits,
    same_image_mask,
    topk_mask,
)
from lexret.vocab import default_vocabulary

log = logging.getLogger(__name__)

MASK_ID = 103


@dataclass
class Data:
    cache: FeatureCache
    n_train: int
    n_val: int
    views: np.ndarray | None = None  # (n_train, V, patches, channels) augmented views, see cache.image_views

    def captions_of(self, items: np.ndarray) -> list[np.ndarray]:
        return [self.cap_index[i] for i in items]

    def __post_init__(self) -> None:
        owner = self.cache.caption_owner
        self.cap_index = [[] for _ in range(self.n_train + self.n_val)]
        for c, o in enumerate(owner.tolist()):
            self.cap_index[o].append(c)
        self.cap_index = [np.array(x) for x in self.cap_index]
        self.val_caps = np.nonzero(owner >= self.n_train)[0]
        self.val_owner = owner[self.val_caps] - self.n_train
        self.n_train_caps = int((owner < self.n_train).sum())  # train captions come first
        mlm_owner = owner[self.cache.mlm_caption]
        self.mlm_train = np.nonzero(mlm_owner < self.n_train)[0]


def prepare_data(cfg: TrainConfig, out: Path) -> Data:
    train = load_captions(cfg.data, split=cfg.train_split)
    val = load_captions(cfg.data, split=cfg.val_split)
    tr, va = train.items, val.items
    if cfg.limit_items:
        tr, va = tr[: cfg.limit_items], va[: max(2, cfg.limit_items // 4)]
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else out.parent / ".feature-cache"
    cache = build_cache(tr + va, cache_root, image_backbone=cfg.image_backbone).load_to_memory()
    views = None
    if cfg.image_views > 0:
        # like the MLM masks, the views belong to the cache (seed 0), not to a run: other seeds reuse them
        views = np.ascontiguousarray(image_views(tr, cache.folder, cfg.image_backbone, cfg.image_views))
    if cfg.cv_folds > 1:
        return cross_validation_data(cache, len(tr), views, cfg.cv_folds, cfg.cv_fold)
    return Data(cache, len(tr), len(va), views)


def cross_validation_data(cache: FeatureCache, n_train: int, views: np.ndarray | None, folds: int, fold: int) -> Data:
    """Training data of one cross-validation fold: training item ``i`` is held out (the run's
    validation set) when ``i % folds == fold``; the val split is left out entirely."""
    order, n_rest = fold_order(n_train, folds, fold)
    rest = order[:n_rest]
    if n_rest < 2 or order.size - n_rest < 2:
        raise LexretError(f"cv_folds={folds} leaves too few training items ({n_train}) in a fold")
    log.info("cross-validation fold %d of %d: %d train / %d held-out images", fold, folds, n_rest, order.size - n_rest)
    sub = cache.reordered(order)
    return Data(sub, n_rest, order.size - n_rest, None if views is None else views[rest])


def image_batch(data: Data, bi: np.ndarray, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """``(B, patches, channels)`` float32 patch features of training images ``bi`` (in that order):
    the cached centre crop, or with probability ``cfg.view_prob`` one of the image's augmented views
    when ``data.views`` holds them."""
    order = np.argsort(bi, kind="stable")
    patches = torch.from_numpy(np.asarray(data.cache.images[bi[order]], dtype=np.float32))
    patches = patches[torch.from_numpy(np.argsort(order))]
    if data.views is not None and cfg.view_prob > 0:
        use = (torch.rand(len(bi), generator=gen) < cfg.view_prob).numpy()
        if use.any():
            which = torch.randint(data.views.shape[1], (int(use.sum()),), generator=gen).numpy()
            rows = np.nonzero(use)[0]
            patches[torch.from_numpy(rows)] = torch.from_numpy(
                np.asarray(data.views[bi[rows], which], dtype=np.float32)
            )
    return patches


def pooled_features(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled image patches of every item and mean-pooled MiniLM states of every caption."""
    c = data.cache
    n = data.n_train + data.n_val
    img = np.zeros((n, c.images.shape[2]), dtype=np.float32)
    for a in range(0, n, 500):
        img[a : a + 500] = np.asarray(c.images[a : a + 500], dtype=np.float32).mean(1)
    txt = np.zeros((c.text_states.shape[0], c.text_states.shape[2]), dtype=np.float32)
    for a in range(0, txt.shape[0], 2000):
        caps = np.arange(a, min(a + 2000, txt.shape[0]))
        st, _, mask = _text_batch(c, caps)
        txt[caps] = mean_pool(st, mask).numpy()
    return img, txt


class DenseTeacher:
    """Scores of a trained dense checkpoint on the cached features, for distillation."""

    def __init__(self, path: str | Path, data: Data) -> None:
        from lexret.model.checkpoint import load_model

        if not Path(path).is_dir():
            raise LexretError(
                f"distill_from: {path} not found (a relative path is read from the working directory: run "
                "from the repository root, give an absolute path, or set w_distill: 0)"
            )
        model, cfg = load_model(Path(path))
        if cfg["kind"] != "dense":
            raise LexretError(f"distill_from: {path} is a {cfg['kind']} checkpoint; give a dense one")
        if cfg["image_backbone"] != data.cache.image_backbone:
            raise LexretError(
                f"distill_from: {path} was trained on {cfg['image_backbone']} features, this run uses "
                f"{data.cache.image_backbone}; give a dense checkpoint of the same image_backbone"
            )
        img, txt = pooled_features(data)
        with torch.no_grad():
            self.img = model.encode_pooled_image(torch.from_numpy(img))
            self.txt = model.encode_pooled_text(torch.from_numpy(txt))
            self.temperature = float(model.temperature())
        log.info("distilling from %s (temperature %.4f)", path, self.temperature)

    def logits(self, items: np.ndarray, caps: np.ndarray) -> torch.Tensor:
        """``(B, B)`` teacher logits of image ``items[i]`` against caption ``caps[j]``."""
        return (
            self.img[torch.from_numpy(items.astype(np.int64))]
            @ self.txt[torch.from_numpy(caps.astype(np.int64))].T
            / self.temperature
        )


def _batches(n: int, bs: int, rng: np.random.Generator, drop_last: bool = True):
    perm = rng.permutation(n)
    stop = n - bs + 1 if drop_last and n >= bs else n
    for a in range(0, max(stop, 1), bs):
        yield perm[a : a + bs]


class PairSampler:
    """Training batches of (image, caption) pairs, ``n_train // bs`` per epoch.

    ``image``: each epoch visits every training image once, with one of its captions drawn at random.
    ``caption``: batches are cut from a shuffled stream of all training captions (refilled when
    spent), with their images: every caption is seen equally often, and an image may occur twice in
    a batch (the losses then do not count it as a negative of its own captions)."""

    def __init__(self, data: Data, mode: str, bs: int, rng: np.random.Generator) -> None:
        self.data, self.mode, self.bs, self.rng = data, mode, bs, rng
        self.train_caps = np.concatenate(data.captions_of(np.arange(data.n_train)))
        self.stream = np.zeros(0, dtype=np.int64)

    def epoch(self):
        d, rng = self.data, self.rng
        for bi in _batches(d.n_train, self.bs, rng):
            if self.mode == "image":
                yield bi, np.array([rng.choice(d.cap_index[i]) for i in bi])
                continue
            if self.stream.size < len(bi):
                self.stream = np.concatenate([self.stream, rng.permutation(self.train_caps)])
            caps, self.stream = self.stream[: len(bi)], self.stream[len(bi) :]
            yield d.cache.caption_owner[caps].astype(np.int64), caps


def _text_batch(cache: FeatureCache, caps: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = cache.text_ids[caps]
    L = int((ids > 0).sum(1).max())
    states = torch.from_numpy(np.asarray(cache.text_states[caps][:, :L], dtype=np.float32))
    ids_t = torch.from_numpy(ids[:, :L].astype(np.int64))
    return states, ids_t, ids_t > 0


def flip_patch_grid(patches: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Mirror the square patch grid of the rows ``which`` (bool, ``(B,)``) left-right."""
    b, n, d = patches.shape
    side = int(round(n**0.5))
    if side * side != n:
        raise LexretError(f"patch_flip needs a square patch grid, got {n} patches")
    flipped = patches.view(b, side, side, d).flip(2).reshape(b, n, d)
    return torch.where(which.view(b, 1, 1), flipped, patches)


def _lr_lambda(cfg: TrainConfig, total: int, clock=time.time):
    """Linear warm-up over ``warmup_steps``, then cosine decay over the remaining steps, or with
    ``schedule: minutes`` over the remaining share of ``max_minutes`` (for a machine of unknown speed)."""
    start = clock()

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "minutes":
            p = (clock() - start) / (60.0 * cfg.max_minutes)
        else:
            p = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return f


# ------------------------------------------------------------------------------------------------
# sparse


def directions_metrics(t2i: dict, i2t: dict) -> dict:
    """The t2i figures of ``t2i`` and the i2t figures of ``i2t`` (two :func:`retrieval_metrics` results),
    and their RSUM."""
    out = {k: v for k, v in t2i.items() if k.startswith("t2i_")}
    out.update({k: v for k, v in i2t.items() if k.startswith("i2t_")})
    out["rsum"] = float(sum(v for k, v in out.items() if "R@" in k))
    return out


POSTINGS_AT = 1_000_000  # collection size of the postings estimate (the 1M-image target)


def postings_per_query(images: np.ndarray, queries: np.ndarray, n_docs: int) -> float:
    """Mean postings a query reads in a collection of ``n_docs`` images whose terms have the document
    frequencies of ``images`` (rows = image vectors): ``mean_q sum_{t in q} df_t * n_docs``."""
    df = (images > 0).mean(0)
    return float(((queries > 0) @ df).mean() * n_docs)


class SparseTrainer:
    def __init__(self, cfg: TrainConfig, data: Data) -> None:
        self.cfg, self.data = cfg, data
        vocab = default_vocabulary()
        c = data.cache
        train_caps = np.concatenate(data.captions_of(np.arange(data.n_train)))
        active = active_terms([c.text_ids[train_caps]], vocab.tokens, cfg.min_term_count)
        log.info("sparse model emits %d active terms (content wordpieces of training captions)", active.size)
        heads = head_config("sparse", cfg.model, cfg.image_backbone)
        heads["inference_free"] = cfg.inference_free or bool(heads.get("inference_free"))
        self.encoded_documents = cfg.caption_documents == "encoder"
        heads["encoded_documents"] = self.encoded_documents or bool(heads.get("encoded_documents"))
        self.model = SparseLexModel(SparseModelConfig(**heads), word_embeddings(), torch.from_numpy(active))
        self.to_active = torch.full((len(vocab),), -100, dtype=torch.long)
        self.to_active[self.model.active] = torch.arange(active.size)
        if self.model.query_weights is not None:
            idf = idf_table(c.text_ids[train_caps], self.model.to_active.numpy(), self.model.n_terms)
            with torch.no_grad():
                self.model.query_weights.copy_(torch.from_numpy(idf))
            log.info("inference-free text side: query table from IDF over %d training captions", train_caps.size)
        self.doc_freq = DocFrequency(self.model.n_terms, cfg.df_momentum) if cfg.df_flops else None
        # term_precision@10 judges content with lexret.text's list, the one `lexret eval` uses; the
        # model's emission filter (lexret.model.terms) is NLTK's, which keeps e.g. 'two' and 'near'
        self.content = np.array([is_content_term(t) for t in vocab.tokens], dtype=bool)
        self.bow_targets = self._bow_targets()
        self.teacher = DenseTeacher(cfg.distill_from, data) if cfg.distill_from and cfg.w_distill > 0 else None

    def _bow_targets(self):
        """Per item: normalised counts of its captions' active terms, ``(n_items, n_terms)`` CSR."""
        import scipy.sparse as sp

        c = self.data.cache
        lab = self.to_active.numpy()[c.text_ids]
        rows = np.repeat(c.caption_owner[:, None], c.text_ids.shape[1], axis=1)
        ok = lab >= 0
        m = sp.csr_matrix(
            (np.ones(ok.sum(), np.float32), (rows[ok], lab[ok])), shape=(len(self.data.cap_index), self.model.n_terms)
        )
        m.sum_duplicates()
        sums = np.asarray(m.sum(1)).ravel()
        return sp.csr_matrix(sp.diags(1.0 / np.maximum(sums, 1.0)) @ m, dtype=np.float32)

    # ---- losses
    def decoder_loss(self, bott: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, gen: torch.Generator):
        m = self.model
        lab = self.to_active[ids]
        cand = (lab >= 0) & mask
        cand[:, 0] = False
        sel = cand & (torch.rand(ids.shape, generator=gen) < self.cfg.decoder_mask_prob)
        # at least one masked token per row where possible
        none = ~sel.any(1) & cand.any(1)
        if none.any():
            first = cand.float().argmax(1)
            sel[none, first[none]] = True
        if not sel.any():
            return bott.sum() * 0
        inp = ids.masked_fill(sel, MASK_ID)
        emb = m.E_full[inp]
        x = m.decoder.hidden(bott, emb, mask)
        logits = m.decoder.out(x[sel], m.E_active)
        return F.cross_entropy(logits, lab[sel])

    def bow_loss(self, pooled_logits: torch.Tensor, items: np.ndarray) -> torch.Tensor:
        """Cross-entropy of softmax(max-pooled image logits) against the distribution of the content
        wordpieces of all the image's captions: image terms are caption words."""
        target = torch.from_numpy(self.bow_targets[items].toarray())
        return -(target * torch.log_softmax(pooled_logits, dim=-1)).sum(1).mean()

    def mlm_loss(self, rng: np.random.Generator) -> torch.Tensor:
        c = self.data.cache
        rows = rng.choice(self.data.mlm_train, size=min(self.cfg.mlm_batch, self.data.mlm_train.size), replace=False)
        lab = torch.from_numpy(c.mlm_labels[rows].astype(np.int64))
        sel = lab >= 0
        lab_a = self.to_active[lab.clamp_min(0)]
        sel = sel & (lab_a >= 0)
        if not sel.any():
            return torch.zeros(())
        st = torch.from_numpy(np.asarray(c.mlm_states[rows], dtype=np.float32))
        logits = self.model.text_logits(st[sel])
        return F.cross_entropy(logits, lab_a[sel])

    def identity_loss(self, rng: np.random.Generator) -> torch.Tensor:
        """Clean caption token states predict their own (content) wordpiece through the text head."""
        c, d = self.data.cache, self.data
        caps = rng.integers(0, d.n_train_caps, size=self.cfg.mlm_batch)
        states, ids, mask = _text_batch(c, caps)
        lab = self.to_active[ids]
        sel = (lab >= 0) & mask
        if not sel.any():
            return torch.zeros(())
        return F.cross_entropy(self.model.text_logits(states[sel]), lab[sel])

    def pretrain_text_head(self, steps: int, rng: np.random.Generator) -> list[float]:
        """MLM warm-up of the text head alone, then the image head starts as a copy of it."""
        if steps <= 0:
            self.calibrate_text_bias(rng)
            self.model.init_image_head_from_text()
            return []
        head = self.model.text_head
        opt = torch.optim.AdamW(head.parameters(), lr=self.cfg.lr, weight_decay=0.0)
        losses = []
        for _ in tqdm(range(steps), desc="text head MLM warm-up", unit="step", leave=False, mininterval=2):
            loss = self.mlm_loss(rng) + self.cfg.w_mlm_identity * self.identity_loss(rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        log.info(
            "text head MLM warm-up: %d steps, loss %.3f -> %.3f", steps, np.mean(losses[:10]), np.mean(losses[-10:])
        )
        self.calibrate_text_bias(rng)
        self.model.init_image_head_from_text()
        return losses

    @torch.no_grad()
    def calibrate_text_bias(self, rng: np.random.Generator) -> None:
        """Shift the text head's bias (softmax-invariant, so MLM leaves it free) so that only about
        ``init_active_fraction`` of term logits are positive: vectors start sparse and item-specific."""
        q = self.cfg.init_active_fraction
        if q <= 0:
            return
        caps = rng.integers(0, self.data.n_train_caps, size=256)
        states, _, mask = _text_batch(self.data.cache, caps)
        logits = self.model.text_logits(states[mask][:2000])
        shift = float(torch.quantile(logits.flatten()[::7], 1.0 - q))
        self.model.text_head.bias -= shift
        log.info("text head bias shifted by %.3f (%.1f%% of token-term logits positive)", -shift, 100 * q)

    def step_losses(
        self, bi: np.ndarray, caps: np.ndarray, rng: np.random.Generator, gen: torch.Generator, step: int
    ) -> dict:
        cfg, m, c = self.cfg, self.model, self.data.cache
        same = same_image_mask(bi)
        patches = image_batch(self.data, bi, cfg, gen)
        states, ids, mask = _text_batch(c, caps)
        if cfg.patch_flip > 0:
            patches = flip_patch_grid(patches, torch.rand(len(bi), generator=gen) < cfg.patch_flip)
        keep = None
        if cfg.patch_drop > 0:
            keep = torch.rand(patches.shape[:2], generator=gen) >= cfg.patch_drop
            keep[keep.sum(1) == 0, 0] = True
        iv, imx = m.encode_patches(patches, keep)
        tmask = mask
        if cfg.token_drop > 0:
            drop = (torch.rand(mask.shape, generator=gen) < cfg.token_drop) & mask
            drop[:, 0] = False  # [CLS] stays: no caption loses every token
            tmask = mask & ~drop
        dv = None  # caption *document* vectors when they differ from the query vectors
        if m.query_weights is not None:
            tv, tmx = m.query_vectors(ids), None
            if self.encoded_documents:
                dv, tmx = m.encode_text_states(states, tmask)
        else:
            tv, tmx = m.encode_text_states(states, tmask)
        ivk, tvk = topk_mask(iv, cfg.train_top_k_image), topk_mask(tv, cfg.train_top_k_text)
        ivn, tvn = F.normalize(ivk, dim=-1), F.normalize(tvk, dim=-1)
        temp = m.temperature()
        if dv is None:
            losses = {"contrastive": info_nce(ivn, tvn, temp, same)}
            if self.teacher is not None:
                losses["distill"] = distill_loss(
                    mask_logits(ivn @ tvn.T / temp, same), mask_logits(self.teacher.logits(bi, caps), same)
                )
        else:
            dvn = F.normalize(topk_mask(dv, cfg.train_top_k_text), dim=-1)
            t2i, i2t = tvn @ ivn.T, ivn @ dvn.T
            losses = {"contrastive": info_nce_directions(t2i, i2t, temp, same)}
            if self.teacher is not None:
                losses["distill"] = distill_directions(
                    mask_logits(t2i / temp, same), mask_logits(i2t / temp, same),
                    mask_logits(self.teacher.logits(bi, caps), same),
                )  # fmt: skip
        ramp = min(1.0, (step / max(1, cfg.flops_warmup_steps))) ** 2
        normed = cfg.flops_on_normalized
        losses.update(self.regularisers(iv, ivk, ivn if normed else iv, tvn if normed else tv))
        total = cfg.w_contrastive * losses["contrastive"] + ramp * (
            cfg.w_flops_image * losses["flops_image"] + cfg.w_flops_text * losses["flops_text"]
        )
        if dv is not None:  # caption documents: plain FLOPS (their length is the caption index's, not a query's)
            losses["flops_documents"] = flops(dvn if normed else dv)
            total = total + ramp * cfg.w_flops_text * losses["flops_documents"]
        if "budget" in losses:
            total = total + ramp * cfg.w_budget * losses["budget"]
        if "distill" in losses:
            total = total + cfg.w_distill * losses["distill"]
        if cfg.w_mlm > 0:
            losses["mlm"] = self.mlm_loss(rng)
            total = total + cfg.w_mlm * losses["mlm"]
        if cfg.w_mlm_identity > 0:
            losses["mlm_identity"] = self.identity_loss(rng)
            total = total + cfg.w_mlm_identity * losses["mlm_identity"]
        if cfg.w_bow_image > 0:
            losses["bow_image"] = self.bow_loss(imx, bi)
            total = total + cfg.w_bow_image * losses["bow_image"]
        if cfg.bottleneck:
            losses["bn_i2t"] = self.decoder_loss(m.bottleneck(imx), ids, mask, gen)
            total = total + cfg.w_bottleneck_i2t * losses["bn_i2t"]
            if tmx is not None:
                losses["bn_t2t"] = self.decoder_loss(m.bottleneck(tmx), ids, mask, gen)
                total = total + cfg.w_bottleneck_t2t * losses["bn_t2t"]
        losses["total"] = total
        losses["nnz_image"] = (iv > 0).float().sum(1).mean()
        losses["nnz_text"] = (tv > 0).float().sum(1).mean()
        return losses

    def regularisers(self, iv: torch.Tensor, ivk: torch.Tensor, iflops: torch.Tensor, tflops: torch.Tensor) -> dict:
        """FLOPS of the image and text vectors (``iflops``, ``tflops``), DF-weighted when ``df_flops``
        (weights from the running document frequency of the terms in the batches' top-k image vectors
        ``ivk``), and the per-image budget penalty on the raw image vectors ``iv``."""
        cfg = self.cfg
        out = {}
        if self.doc_freq is None:
            out["flops_image"], out["flops_text"] = flops(iflops), flops(tflops)
        else:
            w = df_weights(self.doc_freq.update(ivk), cfg.df_alpha, cfg.df_beta)
            out["flops_image"], out["flops_text"] = df_flops(iflops, w), df_flops(tflops, w)
        if cfg.w_budget > 0:
            out["budget"] = budget_penalty(iv, cfg.doc_budget)
        return out

    # ---- eval
    @torch.no_grad()
    def encode_val(self, bs: int = 250) -> tuple[np.ndarray, np.ndarray]:
        m, d, c = self.model, self.data, self.data.cache
        m.eval()
        imgs = []
        for a in range(d.n_train, d.n_train + d.n_val, bs):
            p = torch.from_numpy(np.asarray(c.images[a : min(a + bs, d.n_train + d.n_val)], dtype=np.float32))
            imgs.append(m.encode_patches(p)[0].numpy())
        txts, docs = [], []
        for a in range(0, d.val_caps.size, bs):
            st, ids, mask = _text_batch(c, d.val_caps[a : a + bs])
            tv = m.query_vectors(ids) if m.query_weights is not None else m.encode_text_states(st, mask)[0]
            txts.append(tv.numpy())
            if self.encoded_documents:
                docs.append(m.encode_text_states(st, mask)[0].numpy())
        m.train()
        return np.concatenate(imgs), np.concatenate(txts), (np.concatenate(docs) if docs else None)

    def evaluate(self, k_img: int | None = None, k_txt: int | None = None) -> dict:
        cfg, d, c = self.cfg, self.data, self.data.cache
        k_img = cfg.top_k_image if k_img is None else k_img
        k_txt = cfg.top_k_text if k_txt is None else k_txt
        iv, tv, dv = self.encode_val()
        ivk, tvk = prune_top_k(iv, k_img), prune_top_k(tv, k_txt)
        norm = l2_normalize if cfg.normalize else (lambda x: x)
        if dv is None:
            res = retrieval_metrics(norm(ivk), norm(tvk), d.val_owner)
            res["rsum_full"] = retrieval_metrics(norm(iv), norm(tv), d.val_owner)["rsum"]
        else:  # t2i: caption queries over the images; i2t: image queries over the encoded caption documents
            dvk = prune_top_k(dv, k_txt)
            res = directions_metrics(
                retrieval_metrics(norm(ivk), norm(tvk), d.val_owner),
                retrieval_metrics(norm(ivk), norm(dvk), d.val_owner),
            )
            res["rsum_full"] = directions_metrics(
                retrieval_metrics(norm(iv), norm(tv), d.val_owner), retrieval_metrics(norm(iv), norm(dv), d.val_owner)
            )["rsum"]
            res["terms_per_caption_document"] = float((dvk > 0).sum(1).mean())
        res["flops"] = expected_flops(ivk, tvk)
        res["terms_per_image"] = float((ivk > 0).sum(1).mean())
        res["terms_per_caption"] = float((tvk > 0).sum(1).mean())
        res["terms_per_image_full"] = float((iv > 0).sum(1).mean())
        res["terms_per_caption_full"] = float((tv > 0).sum(1).mean())
        res["postings_per_query_1m_est"] = postings_per_query(ivk, tvk, POSTINGS_AT)
        active = self.model.active.numpy()
        # every kept term, heaviest first: term_precision skips stopwords before taking its 10, as
        # `lexret eval` does (taking the top 10 first and dropping stopwords counted fewer terms)
        img_terms = [[int(active[t]) for t in row] for row in top_terms(ivk, ivk.shape[1])]
        cap_terms = []
        for i in range(d.n_val):
            ids = c.text_ids[d.cap_index[d.n_train + i]]
            cap_terms.append(set(ids[ids > 0].tolist()))
        res["term_precision@10"] = term_precision(img_terms, cap_terms, self.content, 10)
        return res


# ------------------------------------------------------------------------------------------------
# dense


class DenseTrainer:
    def __init__(self, cfg: TrainConfig, data: Data) -> None:
        self.cfg, self.data = cfg, data
        self.model = DenseModel(DenseModelConfig(**head_config("dense", cfg.model, cfg.image_backbone)))
        self.img_pooled, self.txt_pooled = pooled_features(data)

    def _augmented_image(self, bi: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        """Mean over a random subset of the patches (49 for Lite0, 81 for Lite2; each kept with prob
        ``1 - patch_drop``)."""
        p = image_batch(self.data, bi, self.cfg, gen)
        keep = (torch.rand(p.shape[:2], generator=gen) >= self.cfg.patch_drop).float()
        keep[keep.sum(1) == 0, 0] = 1.0
        return (p * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True)

    def step_losses(
        self, bi: np.ndarray, caps: np.ndarray, rng: np.random.Generator, gen: torch.Generator, step: int
    ) -> dict:
        aug = self.cfg.patch_drop > 0 or self.data.views is not None
        img = self._augmented_image(bi, gen) if aug else torch.from_numpy(self.img_pooled[bi])
        iv = self.model.encode_pooled_image(img)
        tv = self.model.encode_pooled_text(torch.from_numpy(self.txt_pooled[caps]))
        loss = info_nce(iv, tv, self.model.temperature(), same_image_mask(bi))
        return {"contrastive": loss, "total": loss}

    @torch.no_grad()
    def evaluate(self) -> dict:
        d = self.data
        self.model.eval()
        iv = self.model.encode_pooled_image(torch.from_numpy(self.img_pooled[d.n_train :])).numpy()
        tv = self.model.encode_pooled_text(torch.from_numpy(self.txt_pooled[d.val_caps])).numpy()
        self.model.train()
        return retrieval_metrics(iv, tv, d.val_owner)


# ------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, out: str | Path, data: Data | None = None) -> dict:
    """Train per ``cfg``, select the best epoch on val RSUM, write the checkpoint folder ``out``."""
    from lexret.model.checkpoint import save_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = data or prepare_data(cfg, out)
    if data.cache.image_backbone != cfg.image_backbone:
        raise LexretError(
            f"the feature cache holds {data.cache.image_backbone} image features, "
            f"the config asks for {cfg.image_backbone}"
        )
    if data.n_train < 2:
        raise LexretError("training needs at least 2 training items")
    trainer = SparseTrainer(cfg, data) if cfg.kind == "sparse" else DenseTrainer(cfg, data)
    model = trainer.model
    if cfg.kind == "sparse":
        trainer.pretrain_text_head(cfg.mlm_warmup_steps, rng)
    ema = WeightEMA(model, cfg.ema) if cfg.ema > 0 else None
    bs = min(cfg.batch_size, data.n_train)
    steps_per_epoch = max(1, data.n_train // bs)
    total = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
    sampler = PairSampler(data, cfg.pairs, bs, rng)
    history: list[dict] = []
    best: dict | None = None
    best_state = None
    t0 = time.time()
    step = 0
    log.info(
        "training %s: %d train / %d val items, %d epochs x %d steps",
        cfg.kind,
        data.n_train,
        data.n_val,
        cfg.epochs,
        steps_per_epoch,
    )
    stopped_early = False
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(
            sampler.epoch(),
            total=steps_per_epoch,
            desc=f"epoch {epoch}",
            unit="step",
            leave=False,
            mininterval=2,
        )
        for bi, caps in bar:
            losses = trainer.step_losses(bi, caps, rng, gen, step)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model)
            step += 1
            n += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}")
        rec = {k: v / max(1, n) for k, v in sums.items()}
        rec.update(
            epoch=epoch, step=step, minutes=(time.time() - t0) / 60, temperature=float(model.temperature().detach())
        )
        out_of_time = (time.time() - t0) / 60 > cfg.max_minutes and epoch < cfg.epochs
        out_of_time = out_of_time or (0 < cfg.stop_epoch == epoch < cfg.epochs)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs or out_of_time:  # the last epoch is always evaluated
            if ema is None:
                rec["val"] = trainer.evaluate()
            else:
                with ema.swapped(model):
                    rec["val"] = trainer.evaluate()
            if best is None or cfg.select == "last" or rec["val"]["rsum"] > best["val"]["rsum"]:
                best = rec
                best_state = (
                    ema.state_dict(model)
                    if ema is not None
                    else {k: v.detach().clone() for k, v in model.state_dict().items()}
                )
        history.append(rec)
        msg = " ".join(f"{k}={v:.4g}" for k, v in rec.items() if isinstance(v, float) and k != "minutes")
        val = rec.get("val", {})
        log.info(
            "epoch %d (%.1f min): %s | val rsum=%.1f %s",
            epoch,
            rec["minutes"],
            msg,
            val.get("rsum", float("nan")),
            " ".join(f"{k}={v:.1f}" for k, v in val.items() if k.startswith("terms") or k.startswith("term_")),
        )
        if out_of_time:
            why = f"max_minutes={cfg.max_minutes:.0f} reached"
            if epoch == cfg.stop_epoch:
                why = f"stop_epoch={cfg.stop_epoch}"
            log.warning("stopping after epoch %d: %s", epoch, why)
            stopped_early = True
            break
    assert best is not None and best_state is not None
    model.load_state_dict(best_state)
    minutes = (time.time() - t0) / 60
    metrics = {
        "model_id": cfg.model_id,
        "kind": cfg.kind,
        "image_backbone": cfg.image_backbone,
        "best_epoch": best["epoch"],
        "val": best["val"],
        "train_minutes": round(minutes, 2),
        "stopped_early": stopped_early,
        "n_train": data.n_train,
        "n_val": data.n_val,
        "cache_seconds": data.cache.meta.get("seconds"),
    }
    if cfg.kind == "sparse":
        topk = {}
        for k in (16, 32, 64, 128):
            r = trainer.evaluate(k_img=k, k_txt=k)
            topk[str(k)] = {
                key: r[key] for key in ("rsum", "terms_per_image", "terms_per_caption", "term_precision@10", "flops")
            }
        metrics["top_k_ablation"] = topk
    save_checkpoint(out, model, cfg, metrics, history)
    log.info("best epoch %d: val %s; checkpoint in %s (%.1f min)", best["epoch"], json.dumps(best["val"]), out, minutes)
    return metrics
