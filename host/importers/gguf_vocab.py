"""The tokenizer a llama.cpp GGUF carries in its metadata (``tokenizer.ggml.*``), read
and checked; :mod:`tritium.host.gguf_tokenizer` builds a ``tokenizers`` object from it.

Keys (llama.cpp's ``llama-vocab.cpp`` reads the same ones):

- ``tokenizer.ggml.model``: ``llama`` (SentencePiece-style: tokens with ``▁`` for a
  space, merged by score, ``<0xXX>`` byte tokens) or ``gpt2`` (byte-level BPE);
- ``tokenizer.ggml.pre``: the byte-level pre-tokenizer (``gpt2`` only);
- ``tokenizer.ggml.tokens`` (strings), ``.scores`` (float32, required for ``llama``),
  ``.token_type`` (int32: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
  6 byte; all normal when absent), ``.merges`` (``"left right"`` strings, required for
  ``gpt2``), one entry per token id;
- ``.bos_token_id``, ``.eos_token_id``, ``.unknown_token_id``, ``.padding_token_id``,
  ``.eot_token_id``, ``.eom_token_id``; ``.add_bos_token``, ``.add_eos_token``,
  ``.add_space_prefix`` (booleans).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFValueType

from ..errors import ModelFormatError
from .gguf_reader import GGUFFile, open_gguf

__all__ = ["GGUFVocabulary", "read_gguf_vocabulary", "TOKENIZER_MODELS", "TOKEN_TYPES"]

PREFIX = "tokenizer.ggml."
TOKENIZER_MODELS = {"llama": "SentencePiece-style", "gpt2": "byte-level BPE"}
NO_VOCABULARY = ("no_vocab", "none")           # llama.cpp's names for a model without one
TOKEN_TYPES = {"normal": 1, "unknown": 2, "control": 3, "user_defined": 4, "unused": 5,
               "byte": 6}
SPECIAL_IDS = ("bos", "eos", "unknown", "padding", "eot", "eom")
# llama.cpp's defaults for a SentencePiece vocabulary whose metadata leaves them out.
SPM_DEFAULT_IDS = {"bos": 1, "eos": 2, "unknown": 0}


@dataclass(frozen=True)
class GGUFVocabulary:
    """A checked ``tokenizer.ggml.*`` vocabulary: every array has one entry per token,
    every merge names tokens of the vocabulary, every special id is a token."""
    path: Path
    model: str                  # "llama" or "gpt2"
    pre: str                    # tokenizer.ggml.pre, or None
    tokens: list                # str per id
    scores: np.ndarray          # float32 per id, or None
    types: np.ndarray           # int32 per id (TOKEN_TYPES)
    merges: list                # (left, right) pairs, or None
    ids: dict                   # SPECIAL_IDS name -> token id (absent: not set)
    add_bos: bool               # these three None when the file does not say
    add_eos: bool
    add_space_prefix: bool

    def error(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: {what}")


def read_gguf_vocabulary(path) -> GGUFVocabulary:
    """The vocabulary in ``path``'s metadata, or None if it has none."""
    gguf = open_gguf(path)
    meta = _Metadata(gguf)
    model = meta.string("model")
    if model is None or model in NO_VOCABULARY:
        return None
    if model not in TOKENIZER_MODELS:
        raise meta.error(f"tokenizer model {model!r} (tokenizer.ggml.model) is not "
                         f"supported (expected one of "
                         f"{', '.join(f'{k} ({v})' for k, v in TOKENIZER_MODELS.items())})")
    tokens = meta.strings("tokens", required=True)
    count = len(tokens)
    _check_unique(meta, tokens)
    scores = meta.numbers("scores", count, np.float32, required=model == "llama")
    types = meta.numbers("token_type", count, np.int32)
    if types is None:
        types = np.full(count, TOKEN_TYPES["normal"], dtype=np.int32)
    _check_types(meta, types)
    merges = _merges(meta, tokens) if model == "gpt2" else None
    return GGUFVocabulary(
        path=gguf.path, model=model, pre=meta.string("pre"), tokens=tokens, scores=scores,
        types=types, merges=merges, ids=_special_ids(meta, model, count),
        add_bos=meta.flag("add_bos_token"), add_eos=meta.flag("add_eos_token"),
        add_space_prefix=meta.flag("add_space_prefix"))


_V = GGUFValueType
_INTEGER_TYPES = (_V.UINT8, _V.INT8, _V.UINT16, _V.INT16, _V.UINT32, _V.INT32, _V.UINT64,
                  _V.INT64)


class _Metadata:
    """Typed access to the ``tokenizer.ggml.*`` keys, with errors naming the key."""

    def __init__(self, gguf: GGUFFile):
        self.gguf = gguf

    def error(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.gguf.path}: {what}")

    def get(self, name: str, what: str, required=False):
        value = self.gguf.fields.get(PREFIX + name)
        if value is None and required:
            raise self.error(f"the tokenizer has no {PREFIX}{name} ({what})")
        return value

    def wrong(self, name: str, what: str) -> ModelFormatError:
        return self.error(f"{PREFIX}{name} is not {what}")

    def single(self, name: str, kinds: tuple, what: str):
        """A key holding one value of one of ``kinds``, or None if absent."""
        value = self.get(name, what)
        if value is None:
            return None
        if value.type not in kinds:
            raise self.wrong(name, what)
        return value.value

    def string(self, name: str) -> str:
        value = self.single(name, (_V.STRING,), "a string")
        return None if value is None else value.decode("utf-8", errors="replace")

    def strings(self, name: str, required=False) -> list:
        value = self.get(name, "an array of strings", required)
        if value is None:
            return None
        if value.type != _V.ARRAY or value.item_type != _V.STRING:
            raise self.wrong(name, "an array of strings")
        try:
            return [item.decode("utf-8") for item in value.value]
        except UnicodeDecodeError:
            index = next(i for i, item in enumerate(value.value) if not _is_utf8(item))
            raise self.error(f"{PREFIX}{name} item {index} is not UTF-8 text") from None

    def numbers(self, name: str, count: int, dtype, required=False) -> np.ndarray:
        value = self.get(name, "an array of numbers, one per token", required)
        if value is None:
            return None
        if value.type != _V.ARRAY or value.item_type in (_V.STRING, _V.ARRAY, _V.BOOL):
            raise self.wrong(name, "an array of numbers")
        if len(value.value) != count:
            raise self.error(f"{PREFIX}{name} has {len(value.value)} entries, but "
                             f"{PREFIX}tokens has {count}")
        return np.asarray(value.value, dtype=dtype)

    def integer(self, name: str) -> int:
        value = self.single(name, _INTEGER_TYPES, "an integer")
        return None if value is None else int(value)

    def flag(self, name: str) -> bool:
        value = self.single(name, (_V.BOOL,), "a boolean")
        return None if value is None else bool(value)


def _is_utf8(item: bytes) -> bool:
    try:
        item.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_unique(meta: _Metadata, tokens: list):
    seen = {}
    for index, token in enumerate(tokens):
        if token in seen:
            raise meta.error(f"{PREFIX}tokens lists {token!r} twice (ids {seen[token]} and "
                             f"{index})")
        seen[token] = index


def _check_types(meta: _Metadata, types: np.ndarray):
    bad = np.flatnonzero(~np.isin(types, list(TOKEN_TYPES.values())))
    if bad.size:
        raise meta.error(f"{PREFIX}token_type of token {bad[0]} is {types[bad[0]]}, not a "
                         f"token type (1-6)")


def _merges(meta: _Metadata, tokens: list) -> list:
    merges = meta.strings("merges", required=True)
    vocabulary = set(tokens)
    pairs = []
    for index, merge in enumerate(merges):
        parts = merge.split(" ")
        if len(parts) != 2 or not all(parts):
            raise meta.error(f"{PREFIX}merges item {index} ({merge!r}) is not two tokens "
                             f"separated by a space")
        for token in (*parts, "".join(parts)):
            if token not in vocabulary:
                raise meta.error(f"{PREFIX}merges item {index} ({merge!r}) needs the token "
                                 f"{token!r}, which {PREFIX}tokens lacks")
        pairs.append((parts[0], parts[1]))
    return pairs


def _special_ids(meta: _Metadata, model: str, count: int) -> dict:
    ids = {}
    for name in SPECIAL_IDS:
        key = f"{name}_token_id"
        value = meta.integer(key)
        if value is None and model == "llama" and name in SPM_DEFAULT_IDS:
            value = SPM_DEFAULT_IDS[name]
            if value >= count:
                continue
        if value is None:
            continue
        if not 0 <= value < count:
            raise meta.error(f"{PREFIX}{key} is {value}, not one of the {count} tokens")
        ids[name] = value
    return ids
