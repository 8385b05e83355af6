"""Tokenizers: bytes for the shipped tiny model, a Hugging Face ``tokenizer.json``, or
the vocabulary in a GGUF file's metadata.

All offer the same interface: ``encode(text) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, ``eos_ids`` (the ids that end generation) and ``stream_decoder()`` for
printing text while tokens arrive.
"""

import json
from pathlib import Path

from tokenizers import Tokenizer

from .errors import InputError, ModelFormatError

__all__ = ["StreamDecoder", "ByteTokenizer", "HFTokenizer", "GGUFTokenizer",
           "find_tokenizer", "load_tokenizer", "BYTE_VOCAB_SIZE", "check_text"]

BYTE_VOCAB_SIZE = 256
REPLACEMENT_CHARACTER = "\ufffd"
BYTE_TOKENIZER_PRESETS = ("tiny",)


def check_text(text: str) -> str:
    """Text to encode must be valid Unicode: lone surrogates (bytes that were not UTF-8,
    kept by surrogateescape) cannot be tokenized."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"the text is not valid UTF-8 (character {exc.start} is "
                         f"U+{ord(text[exc.start]):04X}, an undecodable byte)") from None
    return text


class StreamDecoder:
    """Turns token ids into text as they arrive, never emitting half a character.

    A token may end inside a multi-byte UTF-8 character (a byte token, a byte-level
    BPE piece), and some tokenizers decode a token differently at the start of a text
    (SentencePiece drops the leading space). So each step decodes the ids since the
    last emitted text together with the ones before them as context, and emits the
    difference only once it no longer ends in U+FFFD, the mark of an unfinished
    character. ``flush`` emits whatever is still held back.
    """

    def __init__(self, decode):
        self._decode = decode
        self._ids = []
        self._context_start = 0    # ids before _emitted_end that give decoding context
        self._emitted_end = 0      # ids before this index have been emitted as text

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self._ids.append(int(token_id))
        text = self._new_text()
        if text and not text.endswith(REPLACEMENT_CHARACTER):
            self._advance()
            return text
        return ""

    def flush(self) -> str:
        """Emit the text still held back; an unfinished character becomes U+FFFD."""
        text = self._new_text()
        self._advance()
        return text

    def _new_text(self) -> str:
        context = self._decode(self._ids[self._context_start:self._emitted_end])
        full = self._decode(self._ids[self._context_start:])
        return full[len(context):]

    def _advance(self):
        self._context_start, self._emitted_end = self._emitted_end, len(self._ids)


class ByteTokenizer:
    """One token per UTF-8 byte: ids 0..255, no special tokens."""

    vocab_size = BYTE_VOCAB_SIZE
    eos_ids = frozenset()

    def encode(self, text: str) -> list:
        return list(check_text(text).encode("utf-8"))

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < BYTE_VOCAB_SIZE]
        if bad:
            raise InputError(f"token id {bad[0]} is outside the byte vocabulary "
                             f"(0..{BYTE_VOCAB_SIZE - 1})")
        return bytes(ids).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self.decode)


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` (BPE, SentencePiece-style, ...) via ``tokenizers``.

    ``eos_ids`` are the ``eos_token_id`` (a number or a list) of the
    ``generation_config.json`` beside it, else of its ``config.json``; given, they win.
    """

    def __init__(self, path, eos_ids=None):
        self.path = Path(path)
        try:
            tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as exc:    # tokenizers raises plain Exception for bad files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFormatError(f"{self.path}: not a readable tokenizer.json "
                                   f"({reason})") from None
        self._use(tokenizer, _configured_eos_ids(self.path.parent) if eos_ids is None
                  else eos_ids)

    def _use(self, tokenizer: Tokenizer, eos_ids):
        self._tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.eos_ids = frozenset(int(i) for i in eos_ids)

    def encode(self, text: str, add_special_tokens: bool = True) -> list:
        """Token ids of ``text``, with the BOS token etc. the tokenizer's template adds."""
        return self._tokenizer.encode(check_text(text),
                                      add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is outside the tokenizer's vocabulary "
                             f"(0..{self.vocab_size - 1})")
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self.decode)


class GGUFTokenizer(HFTokenizer):
    """The vocabulary in a GGUF file's metadata (``tokenizer.ggml.*``), built into a
    ``tokenizers`` object that splits text as llama.cpp does
    (:mod:`tritium.host.gguf_tokenizer`)."""

    def __init__(self, path, vocabulary):
        from .gguf_tokenizer import build_tokenizer, end_of_generation_ids
        self.path = Path(path)
        self._use(build_tokenizer(vocabulary), end_of_generation_ids(vocabulary))


def load_tokenizer(source, model):
    """The tokenizer for ``model`` (a model or its config) loaded from ``source`` (as
    given to ``load_model``): :func:`find_tokenizer`'s, and an error naming what is
    missing if there is none."""
    tokenizer = find_tokenizer(source, model)
    if tokenizer is not None:
        return tokenizer
    path = Path(source)
    if not path.exists():
        raise ModelFormatError(f"{source}: no such file or directory, so no tokenizer "
                               f"(only models with {BYTE_VOCAB_SIZE} tokens use bytes)")
    vocab_size = _vocab_size(model)
    gguf = ", the GGUF holds no tokenizer.ggml.* metadata" if path.suffix == ".gguf" else ""
    raise ModelFormatError(f"{source}: no tokenizer: {_tokenizer_json(path)} is missing"
                           f"{gguf}, and the model's vocabulary of {vocab_size} tokens is not "
                           f"bytes ({BYTE_VOCAB_SIZE})")


def find_tokenizer(source, model):
    """The tokenizer for ``model`` (a model or its config) from ``source``, or None.

    The byte-level presets (``tiny``) use :class:`ByteTokenizer`; otherwise a
    ``tokenizer.json`` in the source directory (or next to the source file) is loaded,
    else the vocabulary in a GGUF source's metadata, and without either a model with
    a 256-token vocabulary uses :class:`ByteTokenizer`. A tokenizer whose vocabulary is
    larger than the model's could produce ids the model has no embedding for, so it is
    an error.
    """
    vocab_size = _vocab_size(model)
    tokenizer = _find_tokenizer(source, vocab_size)
    if tokenizer is not None and tokenizer.vocab_size > vocab_size:
        raise ModelFormatError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens, "
                               f"more than the model's vocabulary of {vocab_size}")
    return tokenizer


def _vocab_size(model) -> int:
    return getattr(model, "config", model).vocab_size


def _find_tokenizer(source, vocab_size: int):
    # Like load_model, a preset name wins over a path of the same name.
    if isinstance(source, str) and source in BYTE_TOKENIZER_PRESETS:
        return ByteTokenizer()
    path = Path(source)
    tokenizer_json = _tokenizer_json(path)
    if tokenizer_json is not None and tokenizer_json.is_file():
        eos_ids = _gguf_eos_ids(path) if path.suffix == ".gguf" else None
        return HFTokenizer(tokenizer_json, eos_ids)
    if path.suffix == ".gguf" and path.is_file():
        from .importers.gguf_vocab import read_gguf_vocabulary
        vocabulary = read_gguf_vocabulary(path)
        if vocabulary is not None:
            return GGUFTokenizer(path, vocabulary)
    if vocab_size == BYTE_VOCAB_SIZE:
        return ByteTokenizer()
    return None


def _gguf_eos_ids(path: Path):
    """A GGUF's end-of-generation ids when a tokenizer.json beside it holds the
    vocabulary (None if the GGUF has no vocabulary: the configs decide)."""
    from .gguf_tokenizer import end_of_generation_ids
    from .importers.gguf_vocab import read_gguf_vocabulary
    vocabulary = read_gguf_vocabulary(path)
    return None if vocabulary is None else end_of_generation_ids(vocabulary)


def _configured_eos_ids(directory: Path) -> frozenset:
    """``eos_token_id`` of a Hugging Face directory's generation_config.json, else of
    its config.json (a number or a list); none if neither says."""
    from .importers.common import read_json_object
    for name in ("generation_config.json", "config.json"):
        path = directory / name
        if not path.is_file():
            continue
        value = read_json_object(path).get("eos_token_id")
        if value is None:
            continue
        ids = value if isinstance(value, list) else [value]
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ModelFormatError(f"{path}: eos_token_id must be a token id or a list of "
                                   f"them, not {json.dumps(value)}")
        return frozenset(ids)
    return frozenset()


def _tokenizer_json(path: Path):
    """Where a tokenizer.json for ``path`` would be, or None if ``path`` does not exist."""
    if path.is_dir():
        return path / "tokenizer.json"
    if path.is_file():
        return path if path.name == "tokenizer.json" else path.parent / "tokenizer.json"
    return None
