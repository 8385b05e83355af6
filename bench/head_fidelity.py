"""The integer LM head against the float head at BitNet-0.7B's shape: fidelity and host time.

    python bench/head_fidelity.py --tiny            # writes docs/bench-head-fidelity.json
    python bench/head_fidelity.py --tokens 128 --no-write

A random model of BitNet-0.7B's head shape (vocab 32002, hidden 1536; one decoder layer,
which this bench never runs) gets a head with heavy-tailed weights (Student-t, 5 degrees
of freedom) and row norms spread log-normally, scaled so the float logits spread about
3 nats across the vocabulary, and output-norm gains near one. ``--tokens`` random int32
Q.12 hidden states have per-dimension scales spread log-normally (sigma 0.7), once as
they are and once with four outlier dimensions 30 times larger (residual streams of
trained models have a few such dimensions). For each head format the golden logits
(:func:`tritium.sim.golden.model.final_logits`: integer final norm, integer head) are
compared with the float64 head of the reference (:func:`tritium.sim.reference.lm_head`)
on the same hidden states: top-1 agreement, the float top-1 within the integer top-5,
the total variation between the next-token distributions and the largest logit error
relative to the largest logit. The row "int8 activations, float head" attributes the
error: the final norm's int8 codes against the float64 head weights. Random hidden
states against a random head are a hard case: the top two logits are often close.

``--tiny``: the shipped ``tiny`` model's held-out perplexity (``host/data/tiny_heldout.txt``,
windows of 256 tokens) from the golden model's hidden states with the float64 head
(what the golden model did before), each integer head, and the float reference.

Then the host time of one decode step's head (one token) and of an 8-token run, the
median of ``--repeats`` calls with ``time.perf_counter``: the float64 head recast on
every call (what the host did before), the float64 head cast once, and the integer
heads; and the one-time cost of quantizing each head. Measured on this machine's host
CPU; nothing is asserted here.
"""

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tritium.hw.config import MODEL_PRESETS, HeadConfig
from tritium.host.model import Model
from tritium.sim.golden.fixed import F_ACT
from tritium.sim.golden.head import head_topk, quantize_head
from tritium.sim.golden.model import QuantizedModel, final_logits, final_scores, norm_quant
from tritium.sim.reference import lm_head

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "bench-head-fidelity.json"
FORMATS = {"int8": HeadConfig(), "int4 group 64": HeadConfig("int4", 64),
           "int4 group 128": HeadConfig("int4", 128)}


def make_model(seed: int) -> Model:
    """BitNet-0.7B's vocabulary and hidden size with one small layer and a realistic head."""
    config = dataclasses.replace(MODEL_PRESETS["bitnet-b1.58-large"], name="head-bench",
                                 layers=1, heads=2, kv_heads=2, ffn=256, max_context=16)
    model = Model.random(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    vocab, hidden = config.vocab_size, config.hidden
    rows = rng.standard_t(5, (vocab, hidden)) * np.exp(0.3 * rng.standard_normal((vocab, 1)))
    # Student-t(5) has variance 5/3: scale so a unit-RMS input gives logits of std ~3.
    model.lm_head = (rows * 3.0 / np.sqrt(hidden * 5 / 3)).astype(np.float32)
    return model


def hidden_states(tokens: int, hidden: int, seed: int, outliers: bool) -> np.ndarray:
    """int32 Q.12 hidden states with spread-out dimension scales (and four outliers)."""
    rng = np.random.default_rng(seed)
    scales = np.exp(0.7 * rng.standard_normal(hidden))
    if outliers:
        scales[rng.choice(hidden, 4, replace=False)] = 30.0
    values = rng.standard_normal((tokens, hidden)) * scales
    return np.rint(values * 2.0 ** F_ACT).astype(np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def compare(logits: np.ndarray, exact: np.ndarray, top5: np.ndarray) -> dict:
    top1 = exact.argmax(axis=-1)
    tv = 0.5 * np.abs(softmax(logits) - softmax(exact)).sum(axis=-1)
    return {"top1_agreement": float(np.mean(logits.argmax(axis=-1) == top1)),
            "float_top1_in_top5": float(np.mean((top5 == top1[:, None]).any(axis=-1))),
            "total_variation_mean": float(tv.mean()), "total_variation_max": float(tv.max()),
            "max_logit_error_relative": float(np.abs(logits - exact).max()
                                              / np.abs(exact).max())}


def fidelity(qmodels: dict, head64: np.ndarray, states: np.ndarray, exact: np.ndarray) -> dict:
    rows = {}
    for name, qmodel in qmodels.items():
        _, top5 = head_topk(final_scores(qmodel, states)[0], 5)
        rows[name] = {**compare(final_logits(qmodel, states), exact, top5),
                      "weight_bytes": qmodel.head.weight_bytes}
    # The final norm's codes times their float scale, against the float64 head weights.
    qmodel = qmodels["int8"]
    codes, (m, e) = norm_quant(states, qmodel.output_norm, qmodel.eps[qmodel.config.hidden])
    factor = np.ldexp(m.astype(np.float64), e - qmodel.output_norm.frac_bits) \
        * np.sqrt(float(qmodel.config.hidden)) / 127.0
    logits = (codes * factor[:, None]) @ head64.T
    rows["int8 activations, float head"] = compare(
        logits, exact, np.argsort(-logits, axis=-1, kind="stable")[:, :5])
    return rows


def tiny_perplexity() -> dict:
    """Held-out perplexity of the shipped tiny model: golden hidden states through each
    head, and the float reference, in windows of 256 tokens."""
    from tritium.host.importers import load_model
    from tritium.host.tokenizer import load_tokenizer
    from tritium.sim.golden.model import GoldenModel
    from tritium.sim.reference import ReferenceModel
    model = load_model("tiny")
    text = (ROOT / "host" / "data" / "tiny_heldout.txt").read_text(encoding="utf-8")
    ids = np.asarray(load_tokenizer("tiny", model).encode(text), dtype=np.int64)
    golden, reference = GoldenModel(model), ReferenceModel(model)
    heads = {"golden, float64 head (before)": lambda h: lm_head(model, h / 2.0 ** F_ACT)}
    for name, config in FORMATS.items():
        qmodel = QuantizedModel(model, config)
        heads[f"golden, {name} head"] = lambda h, q=qmodel: final_logits(q, h)
    nll = {name: 0.0 for name in [*heads, "reference"]}
    count = 0
    for start in range(0, len(ids), 256):
        chunk = ids[start:start + 256]
        if len(chunk) < 2:
            continue
        targets = chunk[1:]
        hidden = golden.forward_hidden(chunk[:-1], golden.new_cache())
        runs = {name: head(hidden) for name, head in heads.items()}
        runs["reference"] = reference.forward(chunk[:-1], reference.new_cache())
        for name, logits in runs.items():
            shifted = logits - logits.max(axis=-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            nll[name] -= log_probs[np.arange(len(targets)), targets].sum()
        count += len(targets)
    result = {name: float(np.exp(total / count)) for name, total in nll.items()}
    return {"tokens": count, "perplexity": result,
            "relative_to_reference": {name: value / result["reference"] - 1
                                      for name, value in result.items() if name != "reference"}}


def median_seconds(call, repeats: int) -> float:
    call()                                              # warm caches and lazy set-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timing(model: Model, qmodels: dict, states: np.ndarray, repeats: int) -> dict:
    head64 = model.head.astype(np.float64)
    result = {}
    for tokens in (1, 8):
        run = states[:tokens]
        floats = run / 2.0 ** F_ACT
        cases = {"float64 head recast per call (before)": lambda: lm_head(model, floats),
                 "float64 head cast once (reference now)": lambda: lm_head(model, floats, head64)}
        for name, qmodel in qmodels.items():
            cases[f"{name} head (golden now)" if name == "int8" else f"{name} head"] = \
                lambda q=qmodel: final_logits(q, run)
        result[f"{tokens} token{'s' if tokens > 1 else ''}"] = {
            name: round(median_seconds(call, repeats) * 1e3, 2) for name, call in cases.items()}
    result["quantize once"] = {
        name: round(median_seconds(lambda c=config: quantize_head(model.head, c), 1) * 1e3, 1)
        for name, config in FORMATS.items()}
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="random hidden states compared")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per case")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tiny", action="store_true",
                        help="also the tiny model's held-out perplexity (about 5 minutes)")
    parser.add_argument("--no-write", action="store_true", help="leave docs/ alone")
    args = parser.parse_args(argv)
    if args.tokens < 8:
        parser.error("--tokens must be at least 8 (the 8-token timing)")
    model = make_model(args.seed)
    head64 = model.head.astype(np.float64)
    qmodels = {name: QuantizedModel(model, config) for name, config in FORMATS.items()}
    cases = {}
    for outliers in (False, True):
        states = hidden_states(args.tokens, model.config.hidden, args.seed + 2, outliers)
        exact = lm_head(model, states / 2.0 ** F_ACT, head64)
        spread = np.sort(exact, axis=-1)
        name = "log-normal dimensions" + (", 4 outliers x30" if outliers else "")
        cases[name] = {
            "float_logits": {"std": float(exact.std(axis=-1).mean()),
                             "top1_minus_top2_median": float(np.median(spread[:, -1]
                                                                       - spread[:, -2]))},
            "formats": fidelity(qmodels, head64, states, exact)}
    del head64
    result = {
        "kind": "integer LM head (sim/golden/head.py) against the float64 head "
                "(sim/reference.py lm_head), BitNet-0.7B head shape, random weights",
        "command": "python bench/head_fidelity.py" + (" " + " ".join(argv) if argv else ""),
        "host": f"{platform.machine()} {platform.processor() or platform.system()}, "
                f"NumPy {np.__version__} (measured on this machine's host CPU)",
        "vocab": model.config.vocab_size, "hidden": model.config.hidden,
        "tokens": args.tokens, "seed": args.seed,
        "float64_head_bytes": int(model.head.size * 8),
        "hidden_states": cases,
        "host_milliseconds": timing(model, qmodels, states, args.repeats),
    }
    if args.tiny:
        result["tiny_heldout"] = tiny_perplexity()
    text = json.dumps(result, indent=1)
    if not args.no_write:
        OUTPUT.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
