"""Pack a quantized LM head into the bytes the head unit streams (docs/head.md).

The layout is :class:`tritium.hw.head_layout.HeadLayout`: blocks of one mantissa word
and ``block_rows`` rows of int8 codes, little endian (byte 0 of a word is its lowest 8
bits, as everywhere in the accelerator's memory). Only the int8 format is packed; the
int4 format (two codes a byte, a mantissa per group) has no hardware yet.
"""

import numpy as np

from tritium.hw.head_layout import HeadLayout
from tritium.sim.golden.head import QuantizedHead

__all__ = ["head_layout", "pack_head", "unpack_head"]


def head_layout(qhead: QuantizedHead, data_width: int) -> HeadLayout:
    """The memory layout of ``qhead`` in words of ``data_width`` bits."""
    return HeadLayout(qhead.vocab, qhead.hidden, data_width)


def pack_head(qhead: QuantizedHead, data_width: int) -> bytes:
    """The head's :class:`HeadLayout` words as bytes: ``layout.words * data_width / 8``
    bytes, word ``a`` at bytes ``a * data_width / 8 ..``; load them at the head's base."""
    if qhead.config.format != "int8":
        raise ValueError(f"pack_head packs int8 heads only, not {qhead.config.format!r} "
                         f"(the int4 format has no head unit yet)")
    layout = head_layout(qhead, data_width)
    width, rows = layout.codes_per_word, layout.block_rows
    mantissas = np.asarray(qhead.mantissas)
    if mantissas.min() < 0 or mantissas.max() >= 2 ** 16:
        raise ValueError("head mantissas must be unsigned 16-bit integers")
    words = np.zeros((layout.words, width), dtype=np.uint8)

    codes = np.zeros((layout.vocab, layout.row_words * width), dtype=np.int8)
    codes[:, :layout.hidden] = qhead.codes
    words[_row_addresses(layout)] = \
        codes.view(np.uint8).reshape(layout.vocab, layout.row_words, width)

    lanes = np.zeros(layout.blocks * rows, dtype="<u2")
    lanes[:layout.vocab] = mantissas
    words[_mantissa_addresses(layout)] = lanes.view(np.uint8).reshape(layout.blocks, width)
    return words.tobytes()


def unpack_head(data: bytes, vocab: int, hidden: int, data_width: int):
    """The codes and mantissas that :func:`pack_head` packed into ``data``: ``(codes
    (vocab, hidden) int8, mantissas (vocab,) int64)``. The device reads a head from its
    memory with it (the software device's HEAD), so a packing error shows as a wrong
    token there; the padding bytes are not looked at."""
    layout = HeadLayout(vocab, hidden, data_width)
    width = layout.codes_per_word
    if len(data) != layout.words * width:
        raise ValueError(f"a {vocab} x {hidden} head in {data_width}-bit words is "
                         f"{layout.words * width} bytes, not {len(data)}")
    words = np.frombuffer(data, dtype=np.uint8).reshape(layout.words, width)
    codes = words[_row_addresses(layout)].reshape(vocab, -1)[:, :hidden].view(np.int8).copy()
    lanes = words[_mantissa_addresses(layout)].reshape(-1).view("<u2")
    return codes, lanes[:vocab].astype(np.int64)


def _row_addresses(layout: HeadLayout) -> np.ndarray:
    """Word addresses of every row's codes, (vocab, row_words)."""
    index = np.arange(layout.vocab)
    first = (index // layout.block_rows) * layout.block_words + 1 \
        + (index % layout.block_rows) * layout.row_words
    return first[:, None] + np.arange(layout.row_words)


def _mantissa_addresses(layout: HeadLayout) -> np.ndarray:
    """Word addresses of the blocks' mantissa words, (blocks,)."""
    return np.arange(layout.blocks) * layout.block_words
