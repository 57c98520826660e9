"""Training losses of the sparse model that do not depend on the training loop.

* :func:`info_nce`, :func:`flops`, :func:`topk_mask`, :func:`distill_loss`: the contrastive loss, the
  FLOPS regulariser, top-k pruning and dense-teacher distillation (moved here from
  :mod:`lexret.training.train`, which still exports them); :func:`distill_rows` and :func:`df_l1`
  for query maps (:mod:`lexret.training.query_map`).
* Posting-length-aware regularisers (issue 17):

  - :class:`DocFrequency` keeps a running estimate of each term's document frequency in the image
    collection (share of images whose top-k vector holds the term), re-estimated at every training
    step from the batch's image vectors (an exponential moving average);
  - :func:`df_weights` maps document frequencies to penalty weights that grow with them (a logistic
    of the document frequency, as in DF-FLOPS, Porco et al. 2025): rare terms are nearly free,
    frequent terms (long posting lists) pay the full FLOPS price;
  - :func:`df_flops` is FLOPS with those per-term weights;
  - :func:`budget_penalty` is an L1 penalty on the weight an image puts *beyond* its top-k budget, so
    that the encoder's top-k pruning drops (almost) nothing and images stay within the budget.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lexret.errors import LexretError


def same_image_mask(items: np.ndarray) -> torch.Tensor | None:
    """``(B, B)`` True where pair ``i``'s image is pair ``j``'s too (``i != j``); None if all differ."""
    it = torch.from_numpy(np.asarray(items, dtype=np.int64))
    same = (it[:, None] == it[None, :]) & ~torch.eye(len(it), dtype=torch.bool)
    return same if bool(same.any()) else None


def mask_logits(logits: torch.Tensor, same: torch.Tensor | None) -> torch.Tensor:
    """Take the other pairs of the same image out of the in-batch softmax (they are not negatives)."""
    return logits if same is None else logits.masked_fill(same, -1e4)


def info_nce(a: torch.Tensor, b: torch.Tensor, temp: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of row ``i`` of ``a`` with row ``i`` of ``b``; ``same`` (see
    :func:`same_image_mask`) removes duplicate images from the negatives."""
    logits = mask_logits(a @ b.T / temp, same)
    tgt = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.T, tgt))


def info_nce_directions(
    t2i: torch.Tensor, i2t: torch.Tensor, temp: torch.Tensor, same: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE when the two directions score on their own vectors: ``t2i (B, B)`` caption-query x image
    scores (row = caption ``i``), ``i2t (B, B)`` image-query x caption-document scores (row = image
    ``i``); pair ``i`` is the positive of row ``i`` in both."""
    tgt = torch.arange(t2i.shape[0])
    return 0.5 * (
        F.cross_entropy(mask_logits(t2i / temp, same), tgt) + F.cross_entropy(mask_logits(i2t / temp, same), tgt)
    )


def distill_directions(t2i: torch.Tensor, i2t: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """:func:`distill_loss` for :func:`info_nce_directions`' two score matrices (already divided by the
    temperature and masked); ``teacher (B, B)`` rows are images, columns captions."""
    rows = F.kl_div(F.log_softmax(i2t, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
    cols = F.kl_div(F.log_softmax(t2i, 1), F.log_softmax(teacher.T, 1), log_target=True, reduction="batchmean")
    return 0.5 * (rows + cols)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over each row (image -> captions) and each column (caption -> images)."""
    rows = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
    cols = F.kl_div(F.log_softmax(student.T, 1), F.log_softmax(teacher.T, 1), log_target=True, reduction="batchmean")
    return 0.5 * (rows + cols)


def distill_rows(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of each row's softmax (logits already divided by the temperature): a
    query's distribution over the documents, as its teacher ranks them."""
    return F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")


def df_l1(v: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``sum_t df_t |v_t|``: for L2-normalised query vectors, a smooth stand-in for the
    postings a query reads (``df (n_terms,)``: the share of documents that hold each term)."""
    return (v.abs() * df).sum(1).mean()


def multi_positive_ce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-log`` of the softmax mass on the row's positives (``positive``: bool, same
    shape, at least one per row): contrastive loss where a row has several right answers."""
    pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), 1)
    return (torch.logsumexp(logits, 1) - pos).mean()


def presence_ce(
    weights: torch.Tensor, candidate: torch.Tensor, present: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Term presence, listwise: per row (an image), the mean over its ``present`` candidate terms (its
    captions' words) of ``-log softmax(weights / temperature)`` over the row's ``candidate`` terms, averaged
    over the rows that have both a present and an absent candidate. Every present term is pulled above
    the absent ones, heaviest absent terms pushed down most (a softmax of the mass on any present term
    instead lets one caption word take all the weight and lowered TP@10 in a test). All arguments
    ``(rows, terms)``; masks are bool."""
    pos = candidate & present
    rows = pos.any(1) & (candidate & ~present).any(1)
    if not bool(rows.any()):
        return weights.sum() * 0.0
    pos, cand = pos[rows], candidate[rows]
    logits = (weights[rows] / temperature).masked_fill(~cand, float("-inf"))
    nll = torch.logsumexp(logits, 1, keepdim=True) - logits
    return (nll.masked_fill(~pos, 0.0).sum(1) / pos.sum(1)).mean()


def flops(v: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser ``sum_t (mean_i |v_it|)^2`` (Paria et al. 2020)."""
    return (v.abs().mean(0) ** 2).sum()


def df_flops(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """DF-weighted FLOPS ``sum_t w_t (mean_i |v_it|)^2``; ``weights (n_terms,)`` from :func:`df_weights`."""
    return (weights * v.abs().mean(0) ** 2).sum()


def topk_mask(v: torch.Tensor, k: int) -> torch.Tensor:
    """``v`` with all but the ``k`` largest entries of each row set to 0 (``k <= 0``: unchanged)."""
    if k <= 0 or k >= v.shape[1]:
        return v
    thr = v.topk(k, dim=1).values[:, -1:]
    return v * (v >= thr)


def budget_penalty(v: torch.Tensor, budget: int) -> torch.Tensor:
    """Mean over rows of the L1 mass beyond each row's ``budget`` heaviest entries (0 when every row
    has at most ``budget`` non-zero entries): the top-k budget is then what the model emits."""
    if budget <= 0:
        raise LexretError(f"a per-document budget is a number of terms >= 1, got {budget}")
    if budget >= v.shape[1]:
        return v.sum() * 0
    return (v.abs() - topk_mask(v.abs(), budget)).sum(1).mean()


def df_weights(df: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Penalty weight per term from its document frequency ``df`` (a share of the collection, in [0, 1]):
    ``sigmoid(beta * (df - alpha))``, which is 0.5 at ``df = alpha`` and grows with ``df``."""
    if not 0.0 < alpha < 1.0 or beta <= 0:
        raise LexretError(f"DF-FLOPS needs 0 < df_alpha < 1 and df_beta > 0, got {alpha} and {beta}")
    return torch.sigmoid(beta * (df - alpha))


class DocFrequency:
    """Running document frequency of each term in the image collection: after each :meth:`update` with
    a batch of (top-k pruned) image vectors, ``df = (1 - m) * df + m * share of the batch holding the
    term``. Starts at ``initial`` (e.g. the shares in the first batch)."""

    def __init__(self, n_terms: int, momentum: float = 0.05) -> None:
        if not 0.0 < momentum <= 1.0:
            raise LexretError(f"df_momentum is in (0, 1], got {momentum}")
        self.momentum = momentum
        self.df = torch.zeros(n_terms)
        self.seen = False

    @torch.no_grad()
    def update(self, v: torch.Tensor) -> torch.Tensor:
        share = (v.detach() > 0).float().mean(0)
        self.df = share if not self.seen else (1 - self.momentum) * self.df + self.momentum * share
        self.seen = True
        return self.df


def idf_table(token_ids: np.ndarray, to_active: np.ndarray, n_terms: int) -> np.ndarray:
    """BM25-style IDF ``ln(1 + (N - df + 0.5) / (df + 0.5))`` of each active term over ``N`` texts given
    as wordpiece ids ``(N, L)`` (0 = padding); ``to_active`` maps a wordpiece id to its active-term index
    (``< 0``: not an active term). Terms seen in no text get the largest value, ``ln(1 + (N + 0.5) / 0.5)``."""
    n = token_ids.shape[0]
    lab = to_active[token_ids]
    rows = np.repeat(np.arange(n), token_ids.shape[1]).reshape(token_ids.shape)
    ok = (lab >= 0) & (token_ids > 0)
    pairs = np.unique(rows[ok].astype(np.int64) * n_terms + lab[ok])
    df = np.bincount(pairs % n_terms, minlength=n_terms).astype(np.float64)
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
