"""Running a model on a backend: sessions, greedy generation and perplexity.

The backends here compute on the host: ``golden`` (the bit-exact integer model of the
hardware) and ``reference`` (float64). Every backend offers ``new_cache()`` and
``forward(token_ids, cache) -> logits``; a :class:`Session` adds the checks that keep
bad input from reaching them.
"""

import numpy as np

from tritium.sim.golden.model import GoldenModel
from tritium.sim.reference import ReferenceModel
from .errors import InputError

__all__ = ["BACKENDS", "make_backend", "Session", "generate", "perplexity"]

BACKENDS = {"golden": GoldenModel, "reference": ReferenceModel}


def make_backend(name: str, model):
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](model)


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

    def feed(self, token_ids) -> np.ndarray:
        """Append tokens (prefill for several, decode for one); return their logits."""
        ids = check_token_ids(token_ids, self.config.vocab_size)
        if len(ids) == 0:
            raise InputError("cannot run an empty token sequence")
        if self.length + len(ids) > self.config.max_context:
            raise InputError(f"{self.length + len(ids)} tokens exceed the context of "
                             f"{self.config.max_context} tokens of model "
                             f"{self.config.name!r}")
        return self.backend.forward(ids, self.cache)


def generate(session: Session, prompt_ids, count: int):
    """Greedy generation: prefill the prompt, then yield ``count`` new token ids."""
    if count < 1:
        raise InputError(f"the number of tokens to generate must be at least 1, not {count}")
    prompt_ids = check_token_ids(prompt_ids, session.config.vocab_size)
    if len(prompt_ids) == 0:
        raise InputError("the prompt is empty")
    needed = len(prompt_ids) + count - 1
    if needed > session.config.max_context - session.length:
        raise InputError(f"prompt of {len(prompt_ids)} tokens plus {count} generated tokens "
                         f"exceeds the context of {session.config.max_context} tokens "
                         f"({session.length} already used)")
    logits = session.feed(prompt_ids)[-1]
    for step in range(count):
        token = int(np.argmax(logits))
        yield token
        if step + 1 < count:
            logits = session.feed([token])[-1]


def perplexity(backend, token_ids, window: int = None):
    """Teacher-forced negative log-likelihood over non-overlapping windows.

    Each window of at most ``window`` tokens (default: the model's context) starts a
    fresh cache and predicts its tokens 2..n from their prefixes. Returns
    ``(perplexity, predicted_token_count)``.
    """
    ids = check_token_ids(token_ids, backend.config.vocab_size)
    window = window or backend.config.max_context
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
    if count == 0:
        raise InputError("the text is too short to measure perplexity (needs 2 tokens)")
    return float(np.exp(total / count)), count
