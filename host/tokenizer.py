"""Tokenizers: bytes for the shipped tiny model, Hugging Face ``tokenizer.json`` otherwise.

Both offer the same interface: ``encode(text) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, and ``stream_decoder()`` for printing text while tokens arrive.
"""

from pathlib import Path

from tokenizers import Tokenizer

from .errors import InputError, ModelFormatError

__all__ = ["StreamDecoder", "ByteTokenizer", "HFTokenizer", "load_tokenizer",
           "BYTE_VOCAB_SIZE", "check_text"]

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
    """A Hugging Face ``tokenizer.json`` (BPE, SentencePiece-style, ...) via ``tokenizers``."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as exc:    # tokenizers raises plain Exception for bad files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFormatError(f"{self.path}: not a readable tokenizer.json "
                                   f"({reason})") from None
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)

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


def load_tokenizer(source, model):
    """The tokenizer for ``model`` loaded from ``source`` (as given to ``load_model``).

    The byte-level presets (``tiny``) use :class:`ByteTokenizer`; otherwise a
    ``tokenizer.json`` in the source directory (or next to the source file) is loaded,
    and without one a model with a 256-token vocabulary uses :class:`ByteTokenizer`.
    A tokenizer whose vocabulary is larger than the model's could produce ids the
    model has no embedding for, so it is an error.
    """
    vocab_size = model.config.vocab_size
    tokenizer = _find_tokenizer(source, vocab_size)
    if tokenizer.vocab_size > vocab_size:
        raise ModelFormatError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens, "
                               f"more than the model's vocabulary of {vocab_size}")
    return tokenizer


def _find_tokenizer(source, vocab_size: int):
    # Like load_model, a preset name wins over a path of the same name.
    if isinstance(source, str) and source in BYTE_TOKENIZER_PRESETS:
        return ByteTokenizer()
    tokenizer_json = _tokenizer_json(Path(source))
    if tokenizer_json is not None and tokenizer_json.is_file():
        return HFTokenizer(tokenizer_json)
    if vocab_size == BYTE_VOCAB_SIZE:
        return ByteTokenizer()
    if tokenizer_json is None:
        raise ModelFormatError(f"{source}: no such file or directory, so no tokenizer "
                               f"(only models with {BYTE_VOCAB_SIZE} tokens use bytes)")
    raise ModelFormatError(f"{source}: no tokenizer: {tokenizer_json} is missing, and "
                           f"the model's vocabulary of {vocab_size} tokens is not bytes "
                           f"({BYTE_VOCAB_SIZE})")


def _tokenizer_json(path: Path):
    """Where a tokenizer.json for ``path`` would be, or None if ``path`` does not exist."""
    if path.is_dir():
        return path / "tokenizer.json"
    if path.is_file():
        return path if path.name == "tokenizer.json" else path.parent / "tokenizer.json"
    return None
