"""Sessions, generation and perplexity on the host backends."""

import dataclasses

import numpy as np
import pytest

from tritium.hw.config import MODEL_PRESETS
from tritium.host.errors import InputError
from tritium.host.model import Model
from tritium.host.runtime import Session, generate, make_backend, perplexity

SMALL = dataclasses.replace(MODEL_PRESETS["tiny"], name="small", layers=1, max_context=20)


@pytest.fixture(scope="module")
def model():
    return Model.random(SMALL, seed=21)


def test_a_conversation_continues_in_the_same_cache(model):
    one, two = Session(make_backend("golden", model)), Session(make_backend("golden", model))
    whole = one.feed([1, 2, 3, 4, 5, 6])
    parts = np.concatenate([two.feed([1, 2, 3]), two.feed([4]), two.feed([5, 6])])
    assert np.array_equal(whole, parts) and one.length == two.length == 6


def test_generate_counts_the_context_already_used(model):
    session = Session(make_backend("reference", model))
    assert len(list(generate(session, [1, 2, 3], 5))) == 5
    assert session.length == 3 + 4                       # the last token is not fed back
    with pytest.raises(InputError, match="exceeds the context of 20 tokens \\(7 already used\\)"):
        list(generate(session, [1] * 10, 5))
    assert session.length == 7                            # nothing ran


@pytest.mark.parametrize("ids, count, match", [
    ([], 1, "the prompt is empty"),
    ([1], 0, "at least 1"),
    ([300], 1, "token id 300 is out of range"),
])
def test_bad_generation_requests(model, ids, count, match):
    with pytest.raises(InputError, match=match):
        list(generate(Session(make_backend("golden", model)), ids, count))


def test_unknown_backend_and_short_text(model):
    with pytest.raises(InputError, match="unknown backend 'fpga'"):
        make_backend("fpga", model)
    with pytest.raises(InputError, match="too short"):
        perplexity(make_backend("golden", model), [5])


def test_perplexity_windows(model):
    backend = make_backend("reference", model)
    ppl, count = perplexity(backend, list(range(30)), window=10)
    assert count == 27 and ppl > 1


def test_generate_checks_before_anything_runs_and_feeds_the_golden_check(model):
    """The one loop: its checks raise at the call, not at the first token, and its
    ``check`` sees every run, here the golden comparison of a host session (equal)."""
    from tritium.host.runtime import GoldenCheck
    session = Session(make_backend("golden", model))
    with pytest.raises(InputError, match="the prompt is empty"):
        generate(session, [], 3)
    check = GoldenCheck(model)
    tokens = list(generate(session, [1, 2, 3], 4, check))
    assert len(tokens) == 4 and session.position == 3 + 3
    assert check.runs == [True] * 4 and check.matches


def test_the_golden_check_compares_a_top_k_bit_for_bit(model):
    """``GoldenCheck.top`` runs the ids on its own cache and compares the device head's
    ``(indices, scores)`` with ``final_top`` of as many entries."""
    from tritium.host.runtime import GoldenCheck
    from tritium.sim.golden.model import final_top
    check = GoldenCheck(model)
    hidden = check.golden.forward_hidden([1, 2, 3], check.golden.new_cache())
    indices, scores = final_top(check.golden.qmodel, hidden, 2)
    assert check.top([1, 2, 3], indices, scores)
    assert not check.top([7], indices, scores)                 # another token's top-k
    assert check.runs == [True, False] and not check.matches and check.seconds > 0


def test_perplexity_reports_its_progress(model):
    seen = []
    perplexity(make_backend("golden", model), list(range(1, 46)), 20,
               lambda done, total: seen.append((done, total)))
    assert seen == [(20, 45), (40, 45), (45, 45)]
