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


def first_new(tokens) -> int:
    """The index of the first token that did not come before it (past the first)."""
    return next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i])


def test_generate_stops_at_an_end_of_sequence_token(model):
    """The EOS token is yielded, then nothing: no decode step runs for it."""
    tokens = list(generate(Session(make_backend("golden", model)), [1, 2, 3], 8))
    k = first_new(tokens)
    session = Session(make_backend("golden", model))
    assert list(generate(session, [1, 2, 3], 8, eos_ids={tokens[k]})) == tokens[:k + 1]
    assert session.position == 3 + k                      # the EOS token was not fed back


def test_the_device_head_stops_at_an_end_of_sequence_token():
    """The device's top-k loop (the tiny preset scores the head on the device) stops
    as the host's does."""
    from tritium.host.accelerator import Accelerator
    from tritium.host.importers import load_model
    from tritium.host.transports import open_transport
    from tritium.hw.config import ACCELERATOR_PRESETS
    tiny, config = load_model("tiny"), ACCELERATOR_PRESETS["tiny"]
    prompt = list(b"Once")
    tokens = list(generate(Session(make_backend("golden", tiny)), prompt, 8))
    k = first_new(tokens)
    with Accelerator(config, open_transport("model", config)) as device:
        device.load(tiny)
        assert device.head_on_device
        assert list(device.generate(prompt, 8, eos_ids={tokens[k]})) == tokens[:k + 1]


class Pieces:
    """A stream decoder whose tokens are the strings themselves."""

    def __init__(self, pieces):
        self.pieces = pieces

    def push(self, index):
        return self.pieces[index]

    def flush(self):
        return ""


@pytest.mark.parametrize("pieces, stops, shown, rest, stopped", [
    (["Hello", " wor", "ld", "!"], ["world"], ["Hello", " ", ""], "", True),
    (["a<", "/s", "> b"], ["</s>"], ["a", "", ""], "", True),
    (["a<", "b"], ["</s>"], ["a", "<b"], "", False),       # a false start is released
    (["a", "</"], ["</s>"], ["a", ""], "</", False),        # ... at the end too
    (["xy", "z"], ["yz", "xyz"], ["", ""], "", True),      # the earliest stop wins
    (["one", "two"], [], ["one", "two"], "", False),
])
def test_stop_strings_hold_back_and_cut(pieces, stops, shown, rest, stopped):
    """What each token shows, what finish() adds, and whether a stop string ended it."""
    from tritium.host.runtime import StopStrings
    text = StopStrings(Pieces(pieces), stops)
    got = []
    for index in range(len(pieces)):
        got.append(text.push(index))
        if text.stopped:
            break
    assert got == shown and text.finish() == rest and text.stopped == stopped
