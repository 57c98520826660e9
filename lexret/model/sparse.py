"""The learned sparse lexicon model (LexLIP-style) on frozen EfficientNet-Lite / MiniLM features.

* Text: MiniLM token states -> lexical head (dense, GELU, LayerNorm; decoder tied to MiniLM's
  word-embedding matrix E plus a bias) -> per-token term logits -> log(1 + relu) -> max over
  tokens (padding masked).
* Image: patch states (Lite0: 49 x 1280, Lite2: 81 x 1280) -> projection to 384 (+ positions), optionally with a global
  token (an MLP of the mean patch) -> small transformer -> its own lexical head (initialised as a copy
  of the text head) -> log(1 + relu) -> max over patches.
* Lexicon bottleneck: softmax(max-pooled logits) @ E (E detached) replaces the first input of a weak
  2-layer decoder that reconstructs a masked caption.

The heads emit only the ``active`` terms (content wordpieces seen in training captions; stopwords,
punctuation and special tokens are never emitted); vectors live in the full 30,522-term space.
E is never stored in a checkpoint: it is read from the MiniLM weights package.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SparseModelConfig:
    hidden: int = 384
    image_in: int = 1280
    n_patches: int = 49  # follows the image backbone (lexret.model.backbones.head_config): Lite0 49, Lite2 81
    image_layers: int = 2
    image_heads: int = 6
    image_ff: int = 1024
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_ff: int = 384
    decoder_width: int = 192
    max_len: int = 48
    dropout: float = 0.1
    init_temperature: float = 0.05
    # An extra image token computed by an MLP from the mean of the patches (0 = none): the path the
    # dense baseline's strength comes from, given to the sparse trunk as one more token to pool.
    global_hidden: int = 0
    # The image head's decoder as its own matrix (initialised from E) instead of tied to E: image
    # term scores are then not confined to the geometry of MiniLM's word embeddings.
    untied_image_decoder: bool = False
    # Residual transformer layers over the frozen MiniLM states before the text head, initialised
    # as the identity (0 = none).
    text_layers: int = 0
    # An extra caption token computed by an MLP from the mean of the MiniLM token states (0 = none):
    # the sentence-level view the dense baseline's text side is built on, pooled with the tokens so
    # that a caption can weight words it does not contain.
    text_global_hidden: int = 0
    # Inference-free text side (issue 17): a text's vector is its own active wordpieces, each weighted by
    # a learned per-term table (``query_weights``, relu'd), with no network at query time.
    inference_free: bool = False
    # With inference_free: caption *documents* (the image->text index) are encoded by the text network
    # (text head over MiniLM states), while caption queries stay inference-free.
    encoded_documents: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class LexicalHead(nn.Module):
    """transform (dense, GELU, LayerNorm) then tied decoder ``z @ E[active].T + bias``."""

    def __init__(self, hidden: int, n_terms: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(n_terms))

    def transform(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(h)))

    def forward(self, h: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        return self.transform(h) @ E.T + self.bias


class _MaxTiedLogits(torch.autograd.Function):
    """``max_t (z[b, t] @ E.T + bias)`` over tokens, without materialising the ``(B, T, V)`` logits
    gradient: only the arg-max token of each (item, term) receives gradient, so the backward pass is
    a sparse ``(B*T, V) @ (V, d)`` product instead of a dense one (about half the cost of a step)."""

    @staticmethod
    def forward(ctx, z, E, bias, mask, chunk):
        B, T, d = z.shape
        V = E.shape[0]
        vals = z.new_empty((B, V))
        arg = torch.empty((B, V), dtype=torch.long)
        pad = None if mask is None else ~mask.bool().unsqueeze(-1)
        for a in range(0, V, chunk):
            lg = torch.matmul(z, E[a : a + chunk].T)
            if pad is not None:
                lg.masked_fill_(pad, float("-inf"))
            m, i = lg.max(dim=1)
            vals[:, a : a + chunk] = m + bias[a : a + chunk]
            arg[:, a : a + chunk] = i
        ctx.save_for_backward(arg, E, z if ctx.needs_input_grad[1] else None)
        ctx.shape = (B, T, d)
        return vals

    @staticmethod
    def backward(ctx, g):
        arg, E, z = ctx.saved_tensors
        B, T, d = ctx.shape
        V = E.shape[0]
        rows = (arg + torch.arange(B).unsqueeze(1) * T).reshape(-1)
        cols = torch.arange(V).repeat(B)
        S = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), g.reshape(-1), (B * T, V), check_invariants=False
        ).coalesce()
        gz = torch.sparse.mm(S, E).reshape(B, T, d)
        gE = None if z is None else torch.sparse.mm(S.t(), z.reshape(B * T, d))
        return gz, gE, g.sum(0), None, None


def max_tied_logits(
    z: torch.Tensor, E: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None, chunk: int = 2048
) -> torch.Tensor:
    """Max over tokens of the tied-decoder logits; ``mask (B, T)`` 1 = real token (padding never wins)."""
    return _MaxTiedLogits.apply(z, E, bias, mask, chunk)


def pool(logits: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, V)`` logits -> (max over T of log(1 + relu), max over T of raw logits); ``mask``
    ``(B, T)`` is 1 for real tokens, 0 for padding (padding never wins the max)."""
    if mask is not None:
        logits = logits.masked_fill(~mask.bool().unsqueeze(-1), -1e4)
    mx = logits.max(dim=1).values
    return torch.log1p(torch.relu(mx)), mx


class WeakDecoder(nn.Module):
    """Two small transformer layers (``decoder_width`` wide) that reconstruct masked captions from a
    bottleneck vector; it is kept weak so that the bottleneck, not the decoder, carries the words."""

    def __init__(self, cfg: SparseModelConfig, n_terms: int) -> None:
        super().__init__()
        d, w = cfg.hidden, cfg.decoder_width
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, w))
        nn.init.normal_(self.pos, std=0.02)
        self.in_proj = nn.Linear(d, w)
        self.in_norm = nn.LayerNorm(w)
        self.bottleneck_proj = nn.Linear(d, w)
        layer = nn.TransformerEncoderLayer(
            w, cfg.decoder_heads, cfg.decoder_ff, cfg.dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, cfg.decoder_layers, enable_nested_tensor=False)
        self.out_proj = nn.Linear(w, d)
        self.out = LexicalHead(d, n_terms)

    def hidden(self, bottleneck: torch.Tensor, tok_emb: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Decoder states ``(B, L, d)``: position 0 holds the bottleneck, then the masked caption."""
        x = torch.cat([self.bottleneck_proj(bottleneck).unsqueeze(1), self.in_proj(tok_emb[:, 1:])], dim=1)
        x = self.in_norm(x + self.pos[: x.shape[1]])
        x = self.layers(x, src_key_padding_mask=~pad_mask.bool())
        return self.out_proj(x)

    def forward(self, bottleneck: torch.Tensor, tok_emb: torch.Tensor, pad_mask: torch.Tensor, E: torch.Tensor):
        """``bottleneck (B, d)``; ``tok_emb (B, L, d)`` embeddings of the masked caption (position 0
        is replaced by the bottleneck); ``pad_mask (B, L)`` 1 = real token. Returns ``(B, L, V)``."""
        return self.out(self.hidden(bottleneck, tok_emb, pad_mask), E)


class SparseLexModel(nn.Module):
    """Heads of the sparse model. ``E`` (buffer, not saved) is MiniLM's word-embedding matrix."""

    def __init__(self, cfg: SparseModelConfig, E: torch.Tensor, active: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("active", active.long().clone(), persistent=True)
        self.register_buffer("E_full", E.detach().float(), persistent=False)
        self.register_buffer("E_active", E.detach().float()[self.active].contiguous(), persistent=False)
        n = int(self.active.numel())
        d = cfg.hidden
        self.text_head = LexicalHead(d, n)
        self.image_proj = nn.Linear(cfg.image_in, d)
        self.image_pos = nn.Parameter(torch.zeros(cfg.n_patches, d))
        nn.init.normal_(self.image_pos, std=0.02)
        self.image_in_norm = nn.LayerNorm(d)
        self.image_global = None
        if cfg.global_hidden > 0:
            self.image_global = nn.Sequential(
                nn.LayerNorm(cfg.image_in),
                nn.Linear(cfg.image_in, cfg.global_hidden),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.global_hidden, d),
            )
        layer = nn.TransformerEncoderLayer(
            d, cfg.image_heads, cfg.image_ff, cfg.dropout, batch_first=True, norm_first=True
        )
        self.image_encoder = nn.TransformerEncoder(layer, cfg.image_layers, enable_nested_tensor=False)
        self.image_out_norm = nn.LayerNorm(d)
        self.image_head = copy.deepcopy(self.text_head)
        self.image_decoder = nn.Parameter(self.E_active.clone()) if cfg.untied_image_decoder else None
        self.text_adapter = None
        if cfg.text_layers > 0:
            tl = nn.TransformerEncoderLayer(
                d, cfg.image_heads, cfg.image_ff, cfg.dropout, batch_first=True, norm_first=True
            )
            self.text_adapter = nn.TransformerEncoder(tl, cfg.text_layers, enable_nested_tensor=False)
            for layer_ in self.text_adapter.layers:  # identity at start: the MLM-warmed head sees MiniLM as is
                for lin in (layer_.self_attn.out_proj, layer_.linear2):
                    nn.init.zeros_(lin.weight)
                    nn.init.zeros_(lin.bias)
        self.text_global = None
        if cfg.text_global_hidden > 0:
            self.text_global = nn.Sequential(
                nn.LayerNorm(d),
                nn.Linear(d, cfg.text_global_hidden),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.text_global_hidden, d),
            )
        self.decoder = WeakDecoder(cfg, n)
        to_active = torch.full((E.shape[0],), -1, dtype=torch.long)
        to_active[self.active] = torch.arange(n)
        self.register_buffer("to_active", to_active, persistent=False)
        # per-term query weights of an inference-free model (trainer: initialised from IDF)
        self.query_weights = nn.Parameter(torch.ones(n)) if cfg.inference_free else None
        self.log_inv_temp = nn.Parameter(torch.tensor(float(-torch.log(torch.tensor(cfg.init_temperature)))))

    @property
    def n_terms(self) -> int:
        return int(self.active.numel())

    def init_image_head_from_text(self) -> None:
        self.image_head.load_state_dict(self.text_head.state_dict())

    # ----- logits over the active terms -----------------------------------------------------------

    def text_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.text_head(states, self.E_active)

    def image_states(self, patches: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep (B, n_patches)`` (training augmentation only): patches with 0 are hidden from attention
        and from the global token's mean. Returns ``(B, T, d)``, T = n_patches (+ 1 global token, first)."""
        x = self.image_proj(patches) + self.image_pos
        if self.image_global is not None:
            if keep is None:
                mean = patches.mean(1)
            else:
                k = keep.to(patches.dtype).unsqueeze(-1)
                mean = (patches * k).sum(1) / k.sum(1).clamp_min(1.0)
            x = torch.cat([self.image_global(mean).unsqueeze(1), x], dim=1)
            keep = None if keep is None else self.with_global(keep)
        x = self.image_in_norm(x)
        pad = None if keep is None else ~keep.bool()
        return self.image_out_norm(self.image_encoder(x, src_key_padding_mask=pad))

    def with_global(self, keep: torch.Tensor) -> torch.Tensor:
        """The patch mask ``(B, n_patches)`` extended with the global token (always kept), if the model has one."""
        if self.image_global is None:
            return keep
        return torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)

    @property
    def image_E(self) -> torch.Tensor:
        """The image head's decoder matrix: E over the active terms, or its own (untied) copy."""
        return self.E_active if self.image_decoder is None else self.image_decoder

    def image_logits(self, patches: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.image_states(patches), self.image_E)

    # ----- pooled vectors (B, n_terms) -------------------------------------------------------------

    def encode_text_states(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vector, max-pooled logits)``: ``vector = log(1 + relu(max_t logits))``, padding masked."""
        if self.text_adapter is not None:
            states = self.text_adapter(states, src_key_padding_mask=~mask.bool())
        if self.text_global is not None:
            m = mask.to(states.dtype).unsqueeze(-1)
            mean = (states * m).sum(1) / m.sum(1).clamp_min(1.0)
            states = torch.cat([self.text_global(mean).unsqueeze(1), states], dim=1)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        z = self.text_head.transform(states)
        mx = max_tied_logits(z, self.E_active, self.text_head.bias, mask)
        return torch.log1p(torch.relu(mx)), mx

    def encode_patches(
        self, patches: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vector, max-pooled logits)`` over the n_patches patches (or the kept ones, in training)."""
        z = self.image_head.transform(self.image_states(patches, keep))
        mx = max_tied_logits(z, self.image_E, self.image_head.bias, None if keep is None else self.with_global(keep))
        return torch.log1p(torch.relu(mx)), mx

    def query_table(self) -> torch.Tensor:
        """``(n_terms,)`` non-negative weight of each active term in an inference-free text vector."""
        if self.query_weights is None:
            raise ValueError("query_table: this model has a text encoder, not an inference-free table")
        return torch.relu(self.query_weights)

    def query_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Inference-free text vectors ``(B, n_terms)`` from wordpiece ids ``(B, L)`` (0 = padding): each
        active wordpiece of a text, counted once, gets its :meth:`query_table` weight; other
        wordpieces (stopwords, punctuation, special and unseen tokens) get nothing."""
        idx = self.to_active[ids]
        hit = (idx >= 0) & (ids > 0)
        rows = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(ids)[hit]
        cols = idx[hit]
        present = torch.zeros((ids.shape[0], self.n_terms))
        present[rows, cols] = 1.0
        return present * self.query_table()

    def text_vectors(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, n_terms)`` caption vectors, what an encoder prunes (``lexret.model.ensemble`` has the same)."""
        if self.query_weights is not None and not self.cfg.encoded_documents:
            raise ValueError("an inference-free model encodes texts from wordpiece ids: use query_vectors(ids)")
        return self.encode_text_states(states, mask)[0]

    def image_vectors(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, n_terms)`` image vectors, what an encoder prunes."""
        return self.encode_patches(patches)[0]

    def bottleneck(self, pooled_logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(pooled_logits, dim=-1) @ self.E_active

    def temperature(self) -> torch.Tensor:
        return torch.exp(-self.log_inv_temp.clamp(0.0, 4.6))
