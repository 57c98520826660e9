"""Sparse ensembles: fusion in term space against a brute-force reference, the checkpoint folder
round trip through the shipped model, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lexret.cli import main
from lexret.encoders import SparseEncoder, shipped_checkpoint
from lexret.errors import LexretError
from lexret.model.checkpoint import WEIGHTS, load_model, save_ensemble
from lexret.model.ensemble import SparseEnsemble, prune_normalize
from lexret.model.sparse import SparseLexModel, SparseModelConfig


def _tiny(seed: int, active: torch.Tensor) -> SparseLexModel:
    torch.manual_seed(seed)
    E = torch.randn(60, 384) * 0.1
    cfg = SparseModelConfig(image_in=16, n_patches=4, image_layers=1, image_ff=64, decoder_ff=64, max_len=12)
    m = SparseLexModel(cfg, E, active).eval()
    with torch.no_grad():
        m.image_head.bias.fill_(1.0)  # many positive terms, so that top-k prunes
        m.text_head.bias.fill_(1.0)
    return m


def test_prune_normalize_keeps_the_k_largest_and_unit_norm():
    v = torch.tensor([[0.0, 3.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
    out = prune_normalize(v, 2)
    assert out[0].nonzero().flatten().tolist() == [1, 3]
    assert torch.allclose(out[0, [1, 3]], torch.tensor([3.0, 2.0]) / np.sqrt(13.0))
    assert (out[1] == 0).all()  # an empty row stays empty (no division by zero)
    assert torch.allclose(prune_normalize(v, 0)[0].norm(), torch.tensor(1.0))


def test_ensemble_is_the_weighted_sum_of_pruned_member_vectors_over_the_union_of_terms():
    a = _tiny(0, torch.arange(0, 60, 2))  # 30 terms
    b = _tiny(1, torch.arange(0, 45, 3))  # 15 terms, partly shared
    ens = SparseEnsemble([a, b], weights=[1.0, 0.5], top_k_image=[5, 4], top_k_text=[3, 6]).eval()
    assert ens.active.tolist() == sorted(set(range(0, 60, 2)) | set(range(0, 45, 3)))
    patches = torch.randn(4, 4, 16)
    states, mask = torch.randn(4, 7, 384), torch.ones(4, 7, dtype=torch.bool)
    with torch.no_grad():
        got_i, got_t = ens.image_vectors(patches).numpy(), ens.text_vectors(states, mask).numpy()
        members = [(m, m.image_vectors(patches).numpy(), m.text_vectors(states, mask).numpy()) for m in (a, b)]

    def reference(side: int, ks: list[int]) -> np.ndarray:  # dense numpy, vocabulary space
        full = np.zeros((4, 60))
        for (m, *vecs), k, w in zip(members, ks, [1.0, 0.5]):
            for r, row in enumerate(vecs[side]):
                keep = np.argsort(-row, kind="stable")[:k]
                keep = keep[row[keep] > 0]
                full[r, m.active.numpy()[keep]] += w * row[keep] / np.linalg.norm(row[keep])
        return full[:, ens.active.numpy()]

    assert np.allclose(got_i, reference(0, [5, 4]), atol=1e-6)
    assert np.allclose(got_t, reference(1, [3, 6]), atol=1e-6)
    assert ((got_i > 0).sum(1) <= 9).all() and ((got_i > 0).sum(1) > 5).all()  # the union of 5 + 4 terms


def _single_sparse() -> Path:
    """A single sparse model: the first member of the shipped ensemble."""
    shipped = shipped_checkpoint("sparse")
    cfg = json.loads((shipped / "config.json").read_text())
    return shipped / cfg["ensemble"]["members"][0]["path"] if "ensemble" in cfg else shipped


@pytest.fixture(scope="module")
def one_member(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "solo"
    save_ensemble(out, [_single_sparse()], "test-solo")
    return out


def test_the_shipped_sparse_model_is_an_ensemble_of_inference_only_members():
    from safetensors.numpy import load_file

    shipped = shipped_checkpoint("sparse")
    enc = SparseEncoder.from_pretrained()
    assert isinstance(enc.model, SparseEnsemble) and len(enc.model.members) == 3
    for e in json.loads((shipped / "config.json").read_text())["ensemble"]["members"]:
        state = load_file(str(shipped / e["path"] / WEIGHTS))
        assert not any(k.startswith("decoder.") for k in state)
        assert {v.dtype for k, v in state.items() if k != "active"} == {np.dtype("float16")}


def test_an_ensemble_of_one_gives_its_members_vectors(one_member: Path):
    single = SparseEncoder.from_pretrained(_single_sparse())
    solo = SparseEncoder.from_pretrained(one_member)
    assert solo.model_id == "test-solo" and (solo.top_k_doc, solo.top_k_query) == (single.top_k_doc, single.top_k_query)
    entry = json.loads((one_member / "config.json").read_text())["ensemble"]["members"][0]
    assert entry["model_id"] == single.model_id and single.model_id.endswith("-fp16")  # copied once, not renamed again
    texts = ["a black dog runs on the grass", "two children play in the snow"]
    got, want = solo.encode_texts(texts), single.encode_texts(texts)
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    assert np.allclose(got.values, want.values, rtol=1e-5)
    feats = torch.randn(2, 49, 1280).abs()
    gi, wi = solo.encode_image_features(feats), single.encode_image_features(feats)
    assert np.array_equal(gi.indices, wi.indices) and np.allclose(gi.values, wi.values, rtol=1e-5)


def test_ensemble_checkpoint_errors(tmp_path: Path, one_member: Path):
    shipped = _single_sparse()
    with pytest.raises(LexretError, match="exists"):
        save_ensemble(one_member, [shipped], "x")
    with pytest.raises(LexretError, match="one positive weight per member"):
        save_ensemble(tmp_path / "w", [shipped, shipped], "x", weights=[1.0])
    with pytest.raises(LexretError, match="single sparse model"):
        save_ensemble(tmp_path / "nested", [one_member], "x")
    with pytest.raises(LexretError, match="single sparse model"):
        save_ensemble(tmp_path / "dense", [shipped_checkpoint("dense")], "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written
    broken = tmp_path / "broken"
    shutil.copytree(one_member, broken)
    cfg = json.loads((broken / "config.json").read_text())
    mcfg_path = broken / cfg["ensemble"]["members"][0]["path"] / "config.json"
    mcfg = json.loads(mcfg_path.read_text())
    mcfg["image_backbone"] = "efficientnet-lite2"
    mcfg_path.write_text(json.dumps(mcfg))
    with pytest.raises(LexretError, match="must share the image backbone"):
        load_model(broken)
    mcfg.pop("inference_only")
    mcfg["image_backbone"] = "efficientnet-lite0"
    mcfg_path.write_text(json.dumps(mcfg))
    with pytest.raises(LexretError, match="does not match its config.json"):  # the decoder is not there
        load_model(broken)
    cfg["ensemble"]["members"][0]["path"] = "../elsewhere"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LexretError, match="outside the ensemble folder"):
        load_model(broken)


def test_cli_ensemble_writes_a_folder_every_command_loads(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "fused"
    shipped = str(_single_sparse())
    assert (
        main(["ensemble", shipped, shipped, "--out", str(out), "--model-id", "test-fused", "--top-k-image", "40"]) == 0
    )
    assert main(["explain", "a dog on the beach", "--model", str(out), "--json", "--top", "3"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["model_id"] == "test-fused" and [t for t, _ in got["terms"]][:1] in (["dog"], ["beach"])
    assert SparseEncoder.from_pretrained(out).top_k_doc == 40
    assert main(["ensemble", shipped, "--out", str(tmp_path / "bad"), "--model-id", "x", "--weights", "1,2"]) == 2
    assert not (tmp_path / "bad").exists()


def test_cli_ensemble_removes_a_folder_that_does_not_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def refuse(cls, path=None):
        raise LexretError(f"{path}: cannot run")

    monkeypatch.setattr(SparseEncoder, "from_pretrained", classmethod(refuse))
    out = tmp_path / "fused"
    assert main(["ensemble", str(_single_sparse()), "--out", str(out), "--model-id", "x"]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == []
