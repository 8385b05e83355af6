"""Pack a quantized LM head into the bytes the head unit streams (docs/head.md).

The layout is :class:`tritium.hw.head_layout.HeadLayout`: blocks of mantissa words
and ``block_rows`` rows of codes (int8, or int4 two a byte, low nibble first), little
endian (byte 0 of a word is its lowest 8 bits, as everywhere in the accelerator's
memory).
"""

import numpy as np

from tritium.hw.config import HeadConfig
from tritium.hw.head_layout import HeadLayout, head_layout_for
from tritium.sim.golden.head import QuantizedHead

__all__ = ["head_layout", "pack_head", "unpack_head"]


def head_layout(qhead: QuantizedHead, data_width: int) -> HeadLayout:
    """The memory layout of ``qhead`` in words of ``data_width`` bits."""
    return head_layout_for(qhead.vocab, qhead.hidden, data_width, qhead.config)


def pack_head(qhead: QuantizedHead, data_width: int) -> bytes:
    """The head's :class:`HeadLayout` words as bytes: ``layout.words * data_width / 8``
    bytes, word ``a`` at bytes ``a * data_width / 8 ..``; load them at the head's base."""
    layout = head_layout(qhead, data_width)
    width = data_width // 8
    mantissas = np.asarray(qhead.mantissas).reshape(layout.vocab, layout.groups)
    if mantissas.min() < 0 or mantissas.max() >= 2 ** 16:
        raise ValueError("head mantissas must be unsigned 16-bit integers")
    words = np.zeros((layout.words, width), dtype=np.uint8)

    codes = np.zeros((layout.vocab, layout.row_words * layout.codes_per_word), dtype=np.int8)
    codes[:, :layout.hidden] = qhead.codes
    if layout.code_bits == 4:             # two codes a byte, the even one low
        nibbles = codes.view(np.uint8) & 0xF
        codes = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).view(np.int8)
    words[_row_addresses(layout)] = \
        codes.view(np.uint8).reshape(layout.vocab, layout.row_words, width)

    lanes = np.zeros((layout.blocks * layout.block_rows, layout.groups), dtype="<u2")
    lanes[:layout.vocab] = mantissas
    words[_mantissa_addresses(layout)] = \
        lanes.view(np.uint8).reshape(layout.blocks * layout.mantissa_words, width)
    return words.tobytes()


def unpack_head(data: bytes, vocab: int, hidden: int, data_width: int,
                head: HeadConfig = HeadConfig()):
    """The codes and mantissas that :func:`pack_head` packed into ``data``: ``(codes
    (vocab, hidden) int8, mantissas int64)``, the mantissas ``(vocab,)`` for the int8
    format and ``(vocab, groups)`` for int4, as :class:`QuantizedHead` holds them. The
    device reads a head from its memory with it (the software device's HEAD), so a
    packing error shows as a wrong token there; the padding bytes are not looked at."""
    layout = head_layout_for(vocab, hidden, data_width, head)
    width = data_width // 8
    if len(data) != layout.words * width:
        raise ValueError(f"a {vocab} x {hidden} {head.format} head in {data_width}-bit "
                         f"words is {layout.words * width} bytes, not {len(data)}")
    words = np.frombuffer(data, dtype=np.uint8).reshape(layout.words, width)
    packed = words[_row_addresses(layout)].reshape(vocab, -1)
    if layout.code_bits == 4:             # sign-extend each nibble
        nibbles = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(vocab, -1)
        packed = ((nibbles.astype(np.int16) ^ 8) - 8).astype(np.int8)
    codes = packed[:, :hidden].view(np.int8).copy()
    lanes = words[_mantissa_addresses(layout)].reshape(-1).view("<u2")
    mantissas = lanes.reshape(-1, layout.groups)[:vocab].astype(np.int64)
    return codes, (mantissas[:, 0] if head.format == "int8" else mantissas)


def _row_addresses(layout: HeadLayout) -> np.ndarray:
    """Word addresses of every row's codes, (vocab, row_words)."""
    index = np.arange(layout.vocab)
    first = (index // layout.block_rows) * layout.block_words + layout.mantissa_words \
        + (index % layout.block_rows) * layout.row_words
    return first[:, None] + np.arange(layout.row_words)


def _mantissa_addresses(layout: HeadLayout) -> np.ndarray:
    """Word addresses of the blocks' mantissa words, in order, (blocks * mantissa_words,)."""
    return (np.arange(layout.blocks)[:, None] * layout.block_words
            + np.arange(layout.mantissa_words)).reshape(-1)
