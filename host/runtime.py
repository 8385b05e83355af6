"""Running a model on a backend: sessions, greedy generation and perplexity.

The backends here compute on the host: ``golden`` (the bit-exact integer model of the
hardware) and ``reference`` (float64). Every backend offers ``new_cache()``,
``forward(token_ids, cache, logits="all" | "last") -> logits`` (every token's, or the
last token's only: the LM head is the costly part for a large vocabulary) and
``prepare(progress=None)`` (make its weight operands now rather than at the first
forward pass); a :class:`Session` adds the checks that keep bad input from reaching them.
"""

import time

import numpy as np

from tritium.hw.config import HeadConfig
from tritium.sim.golden.model import GoldenModel, QuantizedModel, final_top
from tritium.sim.reference import LOGIT_ROWS, ReferenceModel
from .errors import InputError

__all__ = ["BACKENDS", "BACKEND_DESCRIPTIONS", "make_backend", "Session", "generate",
           "StopStrings", "GoldenCheck", "perplexity", "check_token_ids", "check_generation",
           "check_window"]

BACKENDS = {"golden": GoldenModel, "reference": ReferenceModel}
BACKEND_DESCRIPTIONS = {
    "golden": "the bit-exact integer model of the accelerator, on the host",
    "reference": "the float64 model, on the host",
}


def make_backend(name: str, model, progress=None):
    """The host backend ``name`` for ``model``, prepared (``prepare(progress)``: its
    weight operands made, which takes seconds for a full-size model)."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    backend = BACKENDS[name](model)
    backend.prepare(progress)
    return backend


def check_token_ids(ids, vocab_size: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size == 0:                       # an empty list has no integer dtype to check
        return np.zeros(0, dtype=np.int64)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise InputError("token ids must be a flat list of integers")
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.size:
        raise InputError(f"token id {int(bad[0])} is out of range for a vocabulary of "
                         f"{vocab_size} (valid: 0..{vocab_size - 1})")
    return ids.astype(np.int64)


class Session:
    """One conversation: a backend, its KV cache and the number of tokens seen."""

    def __init__(self, backend):
        self.backend = backend
        self.config = backend.config
        self.cache = backend.new_cache()

    @property
    def length(self) -> int:
        """Tokens in the cache so far."""
        return self.cache.length

    position = length                       # as :attr:`Accelerator.position`

    @property
    def model_config(self):
        """The model's config (as :attr:`Accelerator.model_config`)."""
        return self.config

    def prefill(self, token_ids, logits: str = "all") -> np.ndarray:
        """Append tokens; return their logits, (tokens, vocab), or with ``logits="last"``
        the last token's only, (1, vocab)."""
        return self.feed(token_ids, logits)

    def decode(self, token_id) -> np.ndarray:
        """Append one token; return its logits, (vocab,)."""
        return self.feed([token_id])[0]

    def feed(self, token_ids, logits: str = "all") -> np.ndarray:
        """Append tokens (prefill for several, decode for one); return their logits
        (``"all"``) or the last token's (``"last"``)."""
        if logits not in LOGIT_ROWS:
            raise InputError(f"logits must be one of {', '.join(LOGIT_ROWS)}, not {logits!r}")
        ids = check_token_ids(token_ids, self.config.vocab_size)
        if len(ids) == 0:
            raise InputError("cannot run an empty token sequence")
        if self.length + len(ids) > self.config.max_context:
            raise InputError(f"{self.length + len(ids)} tokens exceed the context of "
                             f"{self.config.max_context} tokens of model "
                             f"{self.config.name!r}")
        return self.backend.forward(ids, self.cache, logits)


def check_generation(prompt_ids, count: int, config, used: int = 0) -> np.ndarray:
    """Raise :class:`InputError` unless ``count`` tokens can be generated after the
    prompt by a model of ``config`` with ``used`` tokens in its cache; return the
    prompt's checked ids. Needs no backend, so callers check before starting one."""
    if count < 1:
        raise InputError(f"the number of tokens to generate must be at least 1, not {count}")
    prompt_ids = check_token_ids(prompt_ids, config.vocab_size)
    if len(prompt_ids) == 0:
        raise InputError("the prompt is empty")
    needed = len(prompt_ids) + count - 1
    if needed > config.max_context - used:
        raise InputError(f"prompt of {len(prompt_ids)} tokens plus {count} generated tokens "
                         f"exceeds the context of {config.max_context} tokens "
                         f"({used} already used)")
    return prompt_ids


def check_window(window, config) -> int:
    """A perplexity window: at least 2 tokens and at most the model's context."""
    if window is None:
        return config.max_context
    if window < 2:
        raise InputError(f"--window must be at least 2, not {window}")
    if window > config.max_context:
        raise InputError(f"--window {window} is beyond the context of {config.max_context} "
                         f"tokens of model {config.name!r}")
    return window


def generate(runner, prompt_ids, count: int, check=None, eos_ids=()):
    """Greedy generation, the one loop of every backend: prefill the prompt, then yield
    ``count`` new token ids, decoding each but the last. A token of ``eos_ids`` (the
    tokenizer's ``eos_ids``: end of sequence) is yielded and ends the generation early.

    ``runner`` is a :class:`Session` (a host backend), an
    :class:`~tritium.host.accelerator.Accelerator` (a device) or anything else with
    ``prefill(ids, logits="all" | "last") -> logits (tokens or 1, vocab)``, ``decode(id)
    -> logits (vocab,)``, ``position`` (tokens already in its cache) and
    ``model_config``. The checks of :func:`check_generation` happen now, before anything
    runs; the tokens come as the returned iterator is consumed. ``check(ids, logits)``, if given, sees every run's
    input ids and logits, (tokens, vocab): e.g. a :class:`GoldenCheck`. Without a check
    the prompt's logits are asked for its last token only (``prefill(ids, logits=
    "last")``), which every runner offers.

    A runner whose ``head_on_device`` is true (an accelerator whose design scores the
    LM head) is asked for its top-k instead, ``prefill_top(ids, k) -> (indices,
    scores)``: without a check ``k = 1``, the argmax alone (one word over the link per
    step), and a runner whose ``max_steps`` > 1 (the device chooses its own tokens)
    decodes the tokens after the prompt's in runs of up to ``max_steps`` steps,
    ``decode_greedy(token, steps) -> choices``; with a check, the design's ``head_k``
    best, a run per token, given to ``check.top(ids, indices, scores)``. Either way the
    token is the one the logits' argmax would be.
    """
    prompt_ids = check_generation(prompt_ids, count, runner.model_config, runner.position)
    return _until_eos(_greedy(runner, prompt_ids, count, check), frozenset(eos_ids))


def _until_eos(tokens, eos_ids: frozenset):
    # Closing the greedy loop after an end-of-sequence token spares its decode step.
    for token in tokens:
        yield token
        if token in eos_ids:
            tokens.close()
            return


def _greedy(runner, prompt_ids, count, check):
    if getattr(runner, "head_on_device", False):
        return _greedy_top(runner, prompt_ids, count, check)
    return _greedy_logits(runner, prompt_ids, count, check)


def _greedy_logits(runner, prompt_ids, count, check):
    # Greedy decoding needs the last prompt token's logits only, so the head runs once
    # per prompt; a golden check compares every token's.
    logits = runner.prefill(prompt_ids, logits="all" if check is not None else "last")
    if check is not None:
        check(prompt_ids, logits)
    logits = logits[-1]
    for step in range(count):
        token = int(np.argmax(logits))
        yield token
        if step + 1 < count:
            logits = runner.decode(token)
            if check is not None:
                check([token], logits[None])


def _greedy_top(runner, prompt_ids, count, check):
    # k = 1 reads the argmax alone, one word per step; a golden check compares the
    # design's head_k best, a run per token. Without one, a runner that chooses its own
    # tokens (max_steps > 1) decodes up to max_steps of them a run.
    k, ids = (None if check is not None else 1), prompt_ids
    steps = getattr(runner, "max_steps", 1) if check is None else 1
    for made in range(count):
        if steps > 1 and made:
            yield from _greedy_steps(runner, ids[0], count - made, steps)
            return
        indices, scores = runner.prefill_top(ids, k)
        if check is not None:
            check.top(ids, indices, scores)
        yield int(indices[0])
        ids = [int(indices[0])]


def _greedy_steps(runner, token, count, steps):
    # Runs of up to ``steps`` steps append ``token`` and the choices before the last. If
    # the caller stops early (an end-of-sequence token), the conversation is put back
    # to what it holds: the run's input and the choices before the last one taken.
    while count:
        start = runner.position
        choices = runner.decode_greedy(token, min(count, steps))
        for taken, choice in enumerate(choices, start=1):
            try:
                yield int(choice)
            except GeneratorExit:
                runner.reset(start + taken)
                raise
        count -= len(choices)
        token = int(choices[-1])


class StopStrings:
    """The text of generated tokens, ended at the first of ``stops`` (strings), which is
    cut off with what follows it, as llama.cpp's server does.

    ``push(token)`` returns the text that can be shown now: text that might be the
    start of a stop string is held back until the next tokens tell. ``finish()``
    returns the rest. ``stopped`` says whether a stop string ended the text (generating
    further is then pointless). ``decoder`` is a tokenizer's ``stream_decoder()``.
    """

    def __init__(self, decoder, stops=()):
        self.decoder, self.stops = decoder, [stop for stop in stops if stop]
        self.pending, self.stopped = "", False

    def push(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.pending += self.decoder.push(token_id)
        return self._release(final=False)

    def finish(self) -> str:
        if self.stopped:
            return ""
        self.pending += self.decoder.flush()
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        found = [(self.pending.find(stop), stop) for stop in self.stops if stop in self.pending]
        if found:
            self.stopped = True
            text, self.pending = self.pending[:min(found)[0]], ""
            return text
        keep = 0 if final else self._held()
        text, self.pending = self.pending[:len(self.pending) - keep], \
            self.pending[len(self.pending) - keep:]
        return text

    def _held(self) -> int:
        """Length of the longest end of the pending text that begins a stop string."""
        return max((n for stop in self.stops for n in range(1, len(stop))
                    if self.pending.endswith(stop[:n])), default=0)


class GoldenCheck:
    """The golden comparison: called with each run's ``(ids, logits)``, it runs the same
    ids on the golden model (its own cache) and compares the logits bit for bit: every
    token's, or the last token's if ``logits`` has one row for several ids. A device
    head's top-k goes to :meth:`top` instead.

    ``head`` is the LM head's weight format (the device's ``config.head_weights``;
    default int8). Attributes: ``matches`` (every run so far equal), ``runs`` (each run's
    result), ``seconds`` (the time the comparisons took, to tell them apart from the
    run's own). A run of greedy steps goes to :meth:`steps`.
    """

    def __init__(self, model, head: HeadConfig = None):
        self.golden = GoldenModel(model, QuantizedModel(model, head))
        self.cache = self.golden.new_cache()
        self.runs = []
        self.seconds = 0.0

    @property
    def matches(self) -> bool:
        return all(self.runs)

    def __call__(self, ids, logits) -> bool:
        started = time.perf_counter()
        logits = np.asarray(logits)
        which = "last" if logits.ndim == 2 and len(logits) == 1 else "all"
        expected = self.golden.forward(np.asarray(ids, dtype=np.int64), self.cache, which)
        return self._record(np.array_equal(logits, expected), started)

    def top(self, ids, indices, scores) -> bool:
        """Compare a device head's top-k for the last of ``ids``, ``(indices, scores)``,
        with :func:`~tritium.sim.golden.model.final_top` of as many entries, both arrays
        bit for bit."""
        started = time.perf_counter()
        hidden = self.golden.forward_hidden(np.asarray(ids, dtype=np.int64), self.cache)
        expected = final_top(self.golden.qmodel, hidden, len(indices))
        return self._record(np.array_equal(indices, expected[0])
                            and np.array_equal(scores, expected[1]), started)

    def steps(self, token, choices) -> bool:
        """Compare the choices of a run of greedy steps (``decode_greedy(token, steps)``)
        with the golden model's: step ``s`` appends ``token`` (``s`` = 0) or the choice
        before, and chooses the first row of its :func:`final_top`."""
        started = time.perf_counter()
        equal = True
        for choice in choices:
            hidden = self.golden.forward_hidden(np.asarray([token], dtype=np.int64), self.cache)
            indices, _ = final_top(self.golden.qmodel, hidden, 1)
            equal = equal and int(indices[0]) == int(choice)
            token = int(choice)
        return self._record(equal, started)

    def _record(self, equal, started: float) -> bool:
        self.runs.append(bool(equal))
        self.seconds += time.perf_counter() - started
        return self.runs[-1]


def perplexity(backend, token_ids, window: int = None, progress=None):
    """Teacher-forced negative log-likelihood over non-overlapping windows.

    Each window of at most ``window`` tokens (default: the model's context) starts a
    fresh cache and predicts its tokens 2..n from their prefixes. Returns
    ``(perplexity, predicted_token_count)``. ``progress(done, total)``, if given, hears
    the tokens done after each window.
    """
    ids = check_token_ids(token_ids, backend.config.vocab_size)
    window = check_window(window, backend.config)
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = ids[start:start + window]
        if len(chunk) < 2:
            continue
        logits = backend.forward(chunk[:-1], backend.new_cache())
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        total -= log_probs[np.arange(len(chunk) - 1), chunk[1:]].sum()
        count += len(chunk) - 1
        if progress is not None:
            progress(min(start + window, len(ids)), len(ids))
    if count == 0:
        raise InputError("the text is too short to measure perplexity (needs 2 tokens)")
    return float(np.exp(total / count)), count
