"""Where a caption query's encoding time goes, one query at a time on one thread: prints figures,
asserts nothing.

For each model (``--model``, repeatable; default: the shipped ones) and the first ``--queries``
captions of ``--data``: the whole ``encode_texts`` call (what ``lexret eval`` reports as
``query_encode_ms``) and its parts, each timed alone over the same captions: tokenizing, the MiniLM
pass (models with a text network), the model's text heads over the MiniLM states, pruning to the
query's top-k. An inference-free model has no MiniLM pass and no head: its query is a table lookup.

    python tools/profile_query_encoding.py --data ../shared/flickr8k/captions.jsonl --split val
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("profile_query_encoding")
CHECKPOINTS = Path(__file__).resolve().parent.parent / "lexret" / "checkpoints"


def per_call_ms(fn: Callable[[int], object], n: int) -> float:
    """Mean milliseconds of ``fn(i)`` over ``i < n``, after two warm-up calls."""
    fn(0)
    fn(1 % n)
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return 1000.0 * (time.perf_counter() - t) / n


def profile(path: str | None, texts: list[str]) -> dict[str, float | str]:
    import torch

    from lexret.encoders import SparseEncoder

    enc = SparseEncoder.from_pretrained(path)
    n = len(texts)
    out: dict[str, float | str] = {"model_id": enc.model_id, "inference_free": bool(enc.inference_free)}
    out["encode_texts_ms"] = per_call_ms(lambda i: enc.encode_texts([texts[i]]), n)
    if enc.inference_free:
        from lexret.model.backbones import text_tokenizer

        tok = text_tokenizer()
        out["tokenize_ms"] = per_call_ms(lambda i: tok([texts[i]]), n)
        return out
    backbone = enc.text_backbone
    toks = [backbone.tokenize([t]) for t in texts]
    out["tokens_per_query"] = sum(int(t["attention_mask"].sum()) for t in toks) / n
    out["tokenize_ms"] = per_call_ms(lambda i: backbone.tokenize([texts[i]]), n)
    with torch.inference_mode():
        out["minilm_ms"] = per_call_ms(lambda i: backbone.states(toks[i]["input_ids"], toks[i]["attention_mask"]), n)
        feats = [enc._text_features([t]) for t in texts]
        out["heads_ms"] = per_call_ms(lambda i: enc.model.text_vectors(*feats[i]), n)
        vecs = [enc.model.text_vectors(*f).numpy() for f in feats]
    out["prune_ms"] = per_call_ms(lambda i: enc._to_batch(vecs[i], enc.top_k_query), n)
    members = getattr(enc.model, "members", None)
    out["heads"] = len(members) if members is not None else 1
    out["head_terms"] = int(enc.model.n_terms)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="captions JSONL")
    p.add_argument("--split", default=None)
    p.add_argument("--queries", type=int, default=100, help="captions timed (one at a time)")
    p.add_argument("--model", action="append", default=None, help="checkpoint folder (repeat; default: shipped)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from lexret.data import load_captions

    torch.set_num_threads(1)
    texts = load_captions(args.data, split=args.split).captions[: args.queries]
    if len(texts) < 2:
        raise SystemExit(f"{args.data} has fewer than 2 captions to time")
    models = args.model or [str(CHECKPOINTS / "sparse"), str(CHECKPOINTS / "sparse-if")]
    rows = [profile(m, texts) for m in models]
    print(f"{len(texts)} captions, one at a time, 1 thread (ms per query)")
    keys = ("encode_texts_ms", "tokenize_ms", "minilm_ms", "heads_ms", "prune_ms")
    print("| model | " + " | ".join(k.removesuffix("_ms") for k in keys) + " | tokens | heads x terms |")
    print("|" + "---|" * (len(keys) + 3))
    for r in rows:
        cells = [f"{r[k]:.2f}" if k in r else "-" for k in keys]
        tokens = f"{r['tokens_per_query']:.1f}" if "tokens_per_query" in r else "-"
        heads = f"{r['heads']} x {r['head_terms']:,}" if "heads" in r else "- (table)"
        print(f"| {r['model_id']} | " + " | ".join(cells) + f" | {tokens} | {heads} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
