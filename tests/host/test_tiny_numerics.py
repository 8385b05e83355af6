"""The shipped tiny model on the golden model: perplexity within 0.5% of the float
reference (docs/numerics.md sections 8 and 10: integer decoder and integer LM head) and
readable greedy text through the CLI."""

import json
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.host.importers import load_model
from tritium.host.runtime import make_backend, perplexity
from tritium.host.tokenizer import load_tokenizer

HELDOUT = Path(__file__).resolve().parents[2] / "host" / "data" / "tiny_heldout.txt"


@pytest.fixture(scope="module")
def tiny():
    model = load_model("tiny")
    return model, load_tokenizer("tiny", model)


def test_golden_perplexity_within_half_a_percent_of_reference(tiny):
    model, tokenizer = tiny
    ids = tokenizer.encode(HELDOUT.read_text(encoding="utf-8"))[:1024]
    golden, count = perplexity(make_backend("golden", model), ids, window=256)
    reference, _ = perplexity(make_backend("reference", model), ids, window=256)
    assert count == 1020
    assert abs(golden / reference - 1) <= 0.005, (golden, reference)


def test_run_prints_readable_text(tiny, capsys):
    assert main(["run", "--model", "tiny", "--backend", "golden", "--prompt",
                 "Once upon a time", "-n", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    text = result["text"]
    assert len(result["tokens"]) == 32
    assert text.isascii() and all(c.isprintable() or c == "\n" for c in text)
    words = text.split()
    assert len(words) >= 4 and sum(w.strip(".,!?\"'").isalpha() for w in words) >= len(words) - 2
