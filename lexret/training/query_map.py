"""Train an inference-free query map against a fixed sparse model's documents (``lexret train-queries``).

The documents' model (e.g. the shipped v7) keeps encoding images and caption documents; only the
query side is learned: a caption's vector is ``q = x @ W``, ``x`` its distinct content wordpieces (0/1)
and ``W >= 0`` a term-to-term map, initialised as the IDF of each term over the training images on the
diagonal (a caption's own words) and free to learn expansions off it. Per step, over a batch of
training captions and *all* training images (their vectors are fixed, so the whole collection is the
softmax's negatives):

* contrastive: cross-entropy of the caption's own image among the training images;
* distillation: KL of the map's distribution over the images to the documents' model's own (network)
  caption vector's;
* postings: ``df_l1`` of the normalised query, each term weighted by its share of images holding it,
  which moves weight from frequent terms (long posting lists) to rare ones.

With ``image_terms`` the images are not fixed: each term gets a learned scale and offset,
``relu(a_t w - b_t)`` (:mod:`lexret.model.term_scales`), trained by the same losses and by image->text
against the documents' model's caption vectors (the images are that direction's queries);
``df_floor`` keeps the posting penalty from being free on terms the images no longer hold. With
``df_cap`` the images are statically pruned first (:mod:`lexret.model.df_cap`). Either way the
images are the new model's own, and so are its indexes.

``W`` is kept non-negative by projection after each step (so zero entries still receive gradient and
can grow), and written pruned to its ``per_row`` heaviest terms per wordpiece
(:class:`lexret.model.query_map.QueryMap`). The folder names the documents' model and is loaded like
any checkpoint (``--model DIR``): queries by the map, images and caption documents by that model, so
its vectors, priors and indexes are that model's.

Settings are chosen on ``dev_items`` training images held out of the map's training, or on fold
``cv_fold`` of ``cv_folds`` (image ``i`` held out when ``i % cv_folds == cv_fold``, lexret train's rule),
their figures printed per epoch; val is never read.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lexret.errors import LexretError
from lexret.training.config import QueryMapConfig, check_folds, fold_order
from lexret.training.losses import df_l1, distill_rows, multi_positive_ce, presence_ce

log = logging.getLogger(__name__)


def _csr_tensor(m: sp.csr_matrix) -> torch.Tensor:
    m = m.tocsr()
    with warnings.catch_warnings():  # torch's notes that sparse CSR is in beta and unchecked
        warnings.simplefilter("ignore", UserWarning)
        return _csr(m)


def _csr(m: sp.csr_matrix) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int64)),
        torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(m.data.astype(np.float32)),
        m.shape,
    )


def _prune_normalize(v: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """:func:`lexret.model.ensemble.prune_normalize` (top-k, relu, L2) on rows, as numpy."""
    from lexret.model.ensemble import prune_normalize

    return prune_normalize(torch.as_tensor(v), k).numpy()


def document_vectors(model, cache, n_items: int, k_image: int, k_text: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The documents' model's pruned, L2-normalised vectors of the first ``n_items`` cached images and of
    their captions (the teacher's queries), over the model's active terms."""
    from lexret.training.train import _text_batch

    caps = np.nonzero(cache.caption_owner < n_items)[0]
    imgs, txts = [], []
    with torch.inference_mode():
        for a in tqdm(range(0, n_items, 250), desc="documents' model: images", unit="batch"):
            p = torch.from_numpy(np.asarray(cache.images[a : min(a + 250, n_items)], dtype=np.float32))
            imgs.append(sp.csr_matrix(_prune_normalize(model.image_vectors(p), k_image)))
        for a in tqdm(range(0, caps.size, 1000), desc="documents' model: captions", unit="batch"):
            st, _, mask = _text_batch(cache, caps[a : a + 1000])
            txts.append(sp.csr_matrix(_prune_normalize(model.text_vectors(st, mask), k_text)))
    return sp.vstack(imgs).tocsr(), sp.vstack(txts).tocsr()


def cached_document_vectors(
    model, cache, n_items: int, k_image: int, k_text: int, model_id: str
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`document_vectors`, kept in the feature cache's folder (one file per documents' model and
    item count), so that runs with other settings over the same documents skip the networks."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"querymap-documents-{model_id}-{n_items}-{k_image}-{k_text}.npz")
    path = Path(cache.folder) / name
    if path.is_file():
        with np.load(path) as z:
            D = sp.csr_matrix((z["d_data"], z["d_indices"], z["d_indptr"]), shape=tuple(z["d_shape"]))
            T = sp.csr_matrix((z["t_data"], z["t_indices"], z["t_indptr"]), shape=tuple(z["t_shape"]))
        log.info("documents' vectors from %s", path)
        return D, T
    D, T = document_vectors(model, cache, n_items, k_image, k_text)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, d_data=D.data, d_indices=D.indices, d_indptr=D.indptr, d_shape=np.array(D.shape),
             t_data=T.data, t_indices=T.indices, t_indptr=T.indptr, t_shape=np.array(T.shape))  # fmt: skip
    tmp.replace(path)
    return D, T


def capped_documents(D: sp.csr_matrix, n_train: int, share: float, active: np.ndarray):
    """``D`` with :class:`lexret.model.df_cap.DfCap` thresholds (estimated on its first ``n_train`` rows)
    applied, and the cap over vocabulary term ids (``active`` maps ``D``'s columns to them)."""
    from lexret.model.df_cap import DfCap

    Dt = D[:n_train].tocoo()
    local = DfCap.estimate(Dt.data, Dt.col, n_train, share)
    D = D.tocsr().copy()
    D.data[~local.keep_mask(D.indices, D.data, D.shape[1])] = 0
    D.eliminate_zeros()
    log.info("DF cap %g: %.1f terms per image kept (%d terms capped)", share, D.getnnz() / D.shape[0], local.terms.size)
    return D, DfCap(active[local.terms], local.thresholds, share)


def presence(text_ids: np.ndarray, to_active: np.ndarray, n_terms: int) -> sp.csr_matrix:
    """``(texts, n_terms)`` 0/1: which active terms each text (wordpiece ids, 0 = padding) holds."""
    lab = to_active[text_ids]
    ok = (lab >= 0) & (text_ids > 0)
    rows = np.repeat(np.arange(text_ids.shape[0]), text_ids.shape[1]).reshape(text_ids.shape)[ok]
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, lab[ok])), shape=(text_ids.shape[0], n_terms))
    m.data[:] = 1.0  # repeated wordpieces count once
    return m


def image_presence(X: sp.csr_matrix, owner: np.ndarray, n_images: int) -> sp.csr_matrix:
    """``(n_images, n_terms)`` 0/1: which terms occur among the wordpieces of each image's captions
    (``X`` from :func:`presence`, ``owner[c]`` the image of caption ``c``)."""
    owns = sp.csr_matrix(
        (np.ones(owner.size, np.float32), (owner, np.arange(owner.size))), shape=(n_images, owner.size)
    )
    m = (owns @ X.tocsr()).tocsr()
    m.data[:] = 1.0
    return m


def fold_last(D: sp.csr_matrix, owner: np.ndarray, folds: int, fold: int) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """``D``'s rows reordered so that the images of ``fold`` come last (:func:`fold_order`), the
    captions' owners renumbered to match, and the number of images before them (the training images)."""
    order, n_train = fold_order(D.shape[0], folds, fold)
    new_index = np.empty(order.size, np.int64)
    new_index[order] = np.arange(order.size)
    return D.tocsr()[order], new_index[owner], n_train


class QueryMapTrainer:
    """Learns ``W`` from captions ``X`` (presence), their owners, the fixed image vectors ``D`` and the
    teacher's caption vectors ``T``; images ``[0, n_train)`` train, ``[n_train, n_train + n_dev)`` are dev.
    ``content`` (bool per column; None: every column) names the terms the presence loss ranks."""

    def __init__(self, cfg: QueryMapConfig, X: sp.csr_matrix, owner: np.ndarray, D: sp.csr_matrix, T: sp.csr_matrix,
                 n_train: int, content: np.ndarray | None = None) -> None:  # fmt: skip
        self.cfg, self.X, self.owner, self.D, self.T = cfg, X.tocsr(), owner, D.tocsr(), T.tocsr()
        self.n_train = n_train
        self.content = torch.ones(D.shape[1], dtype=torch.bool) if content is None else torch.from_numpy(content)
        self.present = image_presence(self.X, owner, D.shape[0])  # each image's captions' wordpieces
        self.df = np.asarray((self.D[:n_train] > 0).mean(0)).ravel().astype(np.float32)
        self.idf = np.log((n_train + 1) / (self.df * n_train + 1)).astype(np.float32)
        n = D.shape[1]
        self.W = torch.nn.Parameter(torch.diag(torch.from_numpy(self.idf)))
        self.D_train = _csr_tensor(self.D[:n_train])
        self.df_t = torch.from_numpy(self.df)
        self.history: list[dict[str, Any]] = []
        self.image_a = self.image_b = None
        if cfg.image_terms:  # per-term scale a and offset b of the images, learned with the map
            coo = self.D[:n_train].tocoo()
            col = torch.from_numpy(coo.col.astype(np.int64))
            rows_cols = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            self._coo = (rows_cols, col, torch.from_numpy(coo.data.astype(np.float32)))
            self.image_a = torch.nn.Parameter(torch.ones(n))
            self.image_b = torch.nn.Parameter(torch.zeros(n))
        log.info("query map: %d terms, %d training images, %d captions", n, n_train, int((owner < n_train).sum()))

    def queries(self, caps: np.ndarray) -> torch.Tensor:
        return torch.sparse.mm(_csr_tensor(self.X[caps]), self.weights())

    def weights(self) -> torch.Tensor:
        """``W``, or only its diagonal without ``expansion`` (a caption's own words, learned weights)."""
        return self.W if self.cfg.expansion else torch.diag(torch.diagonal(self.W))

    def train_images(self) -> torch.Tensor:
        """The training images' vectors as the map is trained against: fixed, or through the learned
        per-term scale and offset (sparse COO, differentiable in ``a`` and ``b``)."""
        if self.image_a is None:
            return self.D_train
        idx, col, val = self._coo
        v = F.relu(self.image_a[col] * val - self.image_b[col])
        return torch.sparse_coo_tensor(idx, v, (self.n_train, self.D.shape[1])).coalesce()

    def _i2t_loss(self, b: np.ndarray) -> torch.Tensor:
        """The batch captions' images, through the per-term scales, as queries over the batch's caption
        documents (the documents' model's own caption vectors): multi-positive cross-entropy plus
        distillation from the unscaled images' scores, so that image->text keeps the documents' model's."""
        own = self.owner[b]
        raw = torch.from_numpy(self.D[own].toarray())
        img = F.relu(self.image_a * raw - self.image_b) * (raw > 0)
        docs = torch.from_numpy(self.T[b].toarray())
        logits = img @ docs.T / self.cfg.temperature
        ce = multi_positive_ce(logits, torch.from_numpy(own[:, None] == own[None, :]))
        with torch.no_grad():
            teach = raw @ docs.T / self.cfg.temperature
        return ce + distill_rows(logits, teach)

    def _presence_loss(self, b: np.ndarray) -> torch.Tensor:
        """:func:`lexret.training.losses.presence_ce` on the batch captions' images through the per-term
        scales: their content terms, ranked by weight, should be their captions' wordpieces."""
        imgs = np.unique(self.owner[b])
        raw = torch.from_numpy(self.D[imgs].toarray())
        held = raw > 0
        img = F.relu(self.image_a * raw - self.image_b) * held
        present = torch.from_numpy(self.present[imgs].toarray() > 0)
        return presence_ce(img, held & self.content, present, self.cfg.presence_temperature)

    def term_scales(self, active: np.ndarray):
        """The learned image scales and offsets over vocabulary term ids (``active`` maps the columns), or
        None without ``image_terms``; terms left at scale 1 and offset 0 are not stored."""
        if self.image_a is None:
            return None
        from lexret.model.term_scales import TermScales

        a, b = self.image_a.detach().numpy(), self.image_b.detach().numpy()
        moved = (a != 1.0) | (b != 0.0)
        return TermScales(active[moved], a[moved], b[moved])

    def documents(self) -> sp.csr_matrix:
        """All images' vectors (training and dev) as the map sees them, as scipy CSR."""
        if self.image_a is None:
            return self.D
        from lexret.model.term_scales import apply_per_term
        from lexret.types import SparseBatch

        a, b = self.image_a.detach().numpy(), self.image_b.detach().numpy()
        return apply_per_term(SparseBatch.from_scipy(self.D), a, b).to_scipy()

    def _refresh_df(self) -> None:
        if self.image_a is not None:
            self.df = np.asarray((self.documents()[: self.n_train] > 0).mean(0)).ravel().astype(np.float32)
            self.df_t = torch.from_numpy(self.df)

    def fit(self) -> None:
        cfg = self.cfg
        caps = np.nonzero(self.owner < self.n_train)[0]
        steps_per_epoch = int(np.ceil(caps.size / cfg.batch_size))
        params = [self.W] + ([self.image_a, self.image_b] if self.image_a is not None else [])
        opt = torch.optim.Adam(params, lr=cfg.lr)
        total = cfg.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=total, pct_start=0.05)
        rng = np.random.default_rng(cfg.seed)
        t0 = time.time()
        for ep in range(cfg.epochs):
            sums = {"contrastive": 0.0, "distill": 0.0, "df": 0.0, "image_df": 0.0, "i2t": 0.0, "presence": 0.0}
            self._refresh_df()  # the images' document frequencies, re-estimated as their terms are pruned
            order = rng.permutation(caps)
            bar = tqdm(range(0, order.size, cfg.batch_size), desc=f"query map epoch {ep + 1}/{cfg.epochs}", unit="step")
            for a in bar:
                b = order[a : a + cfg.batch_size]
                q = self.queries(b)
                qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-6)
                docs = self.train_images()
                logits = torch.sparse.mm(docs, qn.T).T / cfg.temperature
                parts = {"contrastive": F.cross_entropy(logits, torch.from_numpy(self.owner[b].astype(np.int64)))}
                if cfg.w_distill:
                    with torch.no_grad():
                        teacher_q = torch.from_numpy(self.T[b].toarray())
                        teach = torch.sparse.mm(self.D_train, teacher_q.T).T / cfg.temperature
                    parts["distill"] = distill_rows(logits, teach)
                if cfg.w_df:  # a floor keeps terms that (almost) no image holds from being free to add
                    parts["df"] = df_l1(qn, self.df_t.clamp_min(cfg.df_floor))
                if cfg.w_i2t and self.image_a is not None:
                    parts["i2t"] = self._i2t_loss(b)
                if cfg.w_image_df and self.image_a is not None:
                    vals = docs.values()
                    parts["image_df"] = (vals * self.df_t[docs.indices()[1]]).sum() / self.n_train
                if cfg.w_presence and self.image_a is not None:
                    parts["presence"] = self._presence_loss(b)
                weights = {"contrastive": cfg.w_contrastive, "distill": cfg.w_distill, "df": cfg.w_df,
                           "image_df": cfg.w_image_df, "i2t": cfg.w_i2t, "presence": cfg.w_presence}  # fmt: skip
                loss = sum(weights[k] * v for k, v in parts.items())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    self.W.clamp_(min=0.0)
                    if self.image_a is not None:
                        self.image_a.clamp_(min=0.0)
                for k, v in parts.items():
                    sums[k] += float(v.detach()) / steps_per_epoch
            row: dict[str, Any] = {"epoch": ep + 1, "minutes": round((time.time() - t0) / 60, 2), **sums}
            if self.owner.max() >= self.n_train:
                row["dev"] = self.evaluate()
                log.info("epoch %d: dev %s", ep + 1, json.dumps(row["dev"]))
            self.history.append(row)

    def evaluate(self, ks: tuple[int, ...] = (8, 16, 32)) -> dict[str, Any]:
        """t2i R@1/5/10 on the dev images (beside the teacher's and the captions' own words x IDF) and
        the postings a query would read per 1M documents (sum of its terms' document shares)."""
        lo, hi = self.n_train, int(self.owner.max()) + 1
        caps = np.nonzero(self.owner >= lo)[0]
        own = self.owner[caps] - lo
        with torch.no_grad():
            q = self.queries(caps).numpy()
        out: dict[str, Any] = {}
        self._refresh_df()
        Dd = self.documents()[lo:hi]

        def figures(Q: np.ndarray) -> dict[str, Any]:
            s = np.asarray((Dd @ Q.T).T)
            r = (s > s[np.arange(own.size), own][:, None]).sum(1)
            rec = [round(100 * float(np.mean(r < k)), 1) for k in (1, 5, 10)]
            return {"r": rec, "t2i": round(sum(rec), 1), "terms": round(float((Q > 0).sum(1).mean()), 1),
                    "postings_per_1m": int(((Q > 0) * self.df).sum(1).mean() * 1e6)}  # fmt: skip

        for k in ks:
            out[f"map top-{k}"] = figures(_prune_normalize(q, k))
        out["teacher"] = figures(self.T[caps].toarray())
        out["own words x idf"] = figures(_prune_normalize(self.X[caps].toarray() * self.idf, 0))
        return out


def train_query_map(cfg: QueryMapConfig, out: Path) -> dict[str, Any]:
    """Train and write a query-map checkpoint folder at ``out``; returns its config."""
    from lexret.data import load_captions
    from lexret.model.checkpoint import read_config
    from lexret.model.query_map import QueryMap
    from lexret.training.cache import build_cache
    from lexret.vocab import default_vocabulary

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LexretError(f"{out} exists and is not an empty folder; choose a new folder")
    if not cfg.data:
        raise LexretError("train-queries needs the captions (--data captions.jsonl)")
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.top_k_text < 1 or cfg.per_row < 1 or cfg.dev_items < 0:
        raise LexretError("epochs, top_k_text and per_row must be >= 1, batch_size >= 2 and dev_items >= 0")
    if not 0.0 <= cfg.df_floor < 1.0:
        raise LexretError(f"df_floor is a share of the images in [0, 1), not {cfg.df_floor}")
    if min(cfg.w_i2t, cfg.w_image_df, cfg.w_presence) < 0:
        raise LexretError("the loss weights must be >= 0")
    check_folds(cfg.cv_folds, cfg.cv_fold, "train-queries")
    if cfg.cv_folds > 1 and cfg.dev_items:
        raise LexretError("a cross-validation fold is the dev set: set dev_items to 0 with cv_folds")
    if cfg.presence_temperature <= 0:
        raise LexretError(f"presence_temperature must be > 0, not {cfg.presence_temperature}")
    if cfg.w_presence and not cfg.image_terms:
        raise LexretError("the term-presence loss trains the image-term scales: add --image-terms to --w-presence")
    if not 0.0 <= cfg.df_cap <= 1.0:
        raise LexretError(f"df_cap is a share of the images in [0, 1] (0: no cap), not {cfg.df_cap}")
    if cfg.temperature <= 0 or cfg.lr <= 0 or min(cfg.w_contrastive, cfg.w_distill, cfg.w_df) < 0:
        raise LexretError("temperature and lr must be > 0 and the loss weights >= 0")
    torch.set_num_threads(cfg.threads or (os.cpu_count() or 1))
    torch.manual_seed(cfg.seed)
    documents = Path(cfg.documents)
    dcfg = read_config(documents)
    if dcfg["kind"] != "sparse" or "query_map" in dcfg:
        raise LexretError(f"{documents} is not a sparse model with its own text network; train a map against one")
    from lexret.model.checkpoint import load_model

    model, _ = load_model(documents)
    if getattr(model, "query_weights", None) is not None and not getattr(model.cfg, "encoded_documents", False):
        raise LexretError(f"{documents} encodes captions by a table, not a network: it has no teacher for queries")
    train = load_captions(cfg.data, split=cfg.train_split).items
    val = load_captions(cfg.data, split=cfg.val_split).items
    if cfg.limit_items:
        train, val = train[: cfg.limit_items], val[: max(2, cfg.limit_items // 4)]
    n_items = len(train)
    if cfg.dev_items >= n_items - 1:
        raise LexretError(f"dev_items ({cfg.dev_items}) must leave training images ({n_items} in all)")
    if cfg.cv_folds > n_items:
        raise LexretError(f"{n_items} training images cannot fill {cfg.cv_folds} folds")
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else out.parent / ".feature-cache"
    cache = build_cache(train + val, cache_root, image_backbone=dcfg["image_backbone"])
    k_img, k_txt = int(dcfg.get("top_k_image", 64)), int(dcfg.get("top_k_text", 32))
    D, T = cached_document_vectors(model, cache, n_items, k_img, k_txt, dcfg["model_id"])
    caps = np.nonzero(cache.caption_owner < n_items)[0]
    active = model.active.numpy()
    vocab = default_vocabulary()
    to_active = np.full(len(vocab), -1, np.int64)
    to_active[active] = np.arange(active.size)
    X = presence(np.asarray(cache.text_ids[caps]), to_active, active.size)
    owner = np.asarray(cache.caption_owner[caps])
    n_train = n_items - cfg.dev_items
    if cfg.cv_folds > 1:  # the fold's images go last, as dev images; captions keep their rows
        D, owner, n_train = fold_last(D, owner, cfg.cv_folds, cfg.cv_fold)
    cap = None
    if cfg.image_terms and not dcfg.get("normalize", False):
        raise LexretError(f"{documents} does not normalise its vectors; image term scales need normalised weights")
    if cfg.df_cap:
        if not dcfg.get("normalize", False):
            raise LexretError(f"{documents} does not normalise its vectors; a DF cap needs normalised weights")
        D, cap = capped_documents(D, n_train, cfg.df_cap, active)
    from lexret.text import is_content_term

    content = np.array([is_content_term(vocab.tokens[t]) for t in active], dtype=bool)
    trainer = QueryMapTrainer(cfg, X, owner, D, T, n_train, content=content)
    trainer.fit()
    qmap = QueryMap.from_dense(trainer.weights().detach().numpy(), active, active, len(vocab), per_row=cfg.per_row)
    scales = trainer.term_scales(active)
    # a model whose images are transformed owns its indexes: its default id names the transform, so
    # two trainings with different image scales cannot search each other's indexes
    tags = (f"-dfcap{cfg.df_cap:g}" if cap else "") + (f"-imageterms-{scales.digest()}" if scales is not None else "")
    model_id = cfg.model_id or f"{dcfg['model_id']}{tags}-querymap-v1"
    conf = {
        "kind": "sparse",
        "model_id": model_id,
        "query_map": {
            "documents": os.path.relpath(documents.resolve(), out.resolve()),
            "documents_model_id": dcfg["model_id"],
        },
        "image_backbone": dcfg["image_backbone"],
        "top_k_image": k_img,
        "top_k_text": cfg.top_k_text,
        "top_k_text_documents": k_txt,
        "normalize": bool(dcfg.get("normalize", False)),
        "output_scale": float(dcfg.get("output_scale", 1.0)),
        "training": cfg.to_dict(),
    }
    if cap is not None:
        conf["query_map"]["df_cap"] = cap.cap  # images are capped: indexes carry this model's id
    if scales is not None:
        conf["query_map"]["image_terms"] = True  # images through learned per-term scales: likewise
    out.mkdir(parents=True, exist_ok=True)
    qmap.save(out)
    if cap is not None:
        cap.save(out)
    if scales is not None:
        scales.save(out)
    (out / "config.json").write_text(json.dumps(conf, indent=1) + "\n")
    (out / "model_id").write_text(model_id + "\n")
    (out / "vocab_hash").write_text(vocab.hash + "\n")
    (out / "history.json").write_text(json.dumps(trainer.history, indent=1) + "\n")
    last = trainer.history[-1] if trainer.history else {}
    (out / "metrics.json").write_text(json.dumps({"dev": last.get("dev"), "map_nnz": qmap.nnz}, indent=1) + "\n")
    return conf
