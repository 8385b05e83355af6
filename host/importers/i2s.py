"""bitnet.cpp's I2_S tensor type: ternary weights, 2 bits each, one float32 scale per
tensor (docs/model_import.md, "I2_S", draws a block byte by byte).

I2_S is type 36 of Microsoft's llama.cpp fork (mainline llama.cpp once used 36 for a
type it never wrote to files, so no mainline GGUF holds it). A tensor of ``n`` values
takes ``n / 4 + 32`` bytes (the fork's ``ggml_nbytes``): the packed codes, then the
scale as a little-endian float32, then 28 bytes of padding. Code 0 is -1, 1 is 0 and
2 is +1 (the fork's ``quantize_i2_s`` writes ``q8 = 0, 1, 2``; its dequantizer maps 3
to 0 but its dot-product kernels read 3 as +2, so 3 means a damaged tensor).

The values run in blocks, in the tensor's row-major order, across row ends. Within a
block, byte ``j`` holds values ``j``, ``j + g``, ``j + 2g``, ``j + 3g`` in bits 7-6,
5-4, 3-2 and 1-0, where ``g`` is a quarter of the block. The block size depends on
the machine whose ``quantize_i2_s`` wrote the file (``QK_I2_S``): 128 values on x86
(every released Microsoft GGUF), 64 on ARM. The file does not record which.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import ModelFormatError
from ..model import TernaryTensor

__all__ = ["I2S_TYPE", "I2S_LAYOUTS", "I2SLayout", "i2s_bytes", "decode_i2s"]

I2S_TYPE = 36
TRAILER_BYTES = 32                      # the float32 scale and its padding
VALUES_PER_BYTE = 4
SHIFTS = np.array([6, 4, 2, 0], dtype=np.uint8)     # the k-th value of a byte: bits 7-2k..6-2k


@dataclass(frozen=True)
class I2SLayout:
    """One machine's I2_S block: ``block`` values in ``block / 4`` bytes."""
    name: str
    block: int

    @property
    def group(self) -> int:
        """Bytes per block, and the distance between the values one byte holds."""
        return self.block // VALUES_PER_BYTE


I2S_LAYOUTS = {"x86": I2SLayout("x86", 128), "arm": I2SLayout("arm", 64)}


def i2s_bytes(elements: int) -> int:
    """Bytes an I2_S tensor of ``elements`` values takes in the file."""
    return elements // VALUES_PER_BYTE + TRAILER_BYTES


def decode_i2s(where, name: str, raw: np.ndarray, shape: tuple,
               layout: I2SLayout) -> TernaryTensor:
    """Codes and scale of an I2_S tensor: ``raw`` holds its ``i2s_bytes`` bytes."""
    elements = int(np.prod(shape))
    if elements % layout.block:
        raise ModelFormatError(
            f"{where}: tensor {name} has {elements} values, not a whole number of the "
            f"{layout.name} I2_S layout's {layout.block}-value blocks")
    packed = np.asarray(raw[:elements // VALUES_PER_BYTE]).reshape(-1, 1, layout.group)
    # (blocks, 4, group): value k * group + j of a block sits in byte j at SHIFTS[k].
    stored = (packed >> SHIFTS[None, :, None]) & 0b11
    if np.any(stored == 0b11):
        block = int(np.argmax(np.any(stored == 0b11, axis=(1, 2))))
        raise ModelFormatError(f"{where}: tensor {name} holds the I2_S code 3 (block "
                               f"{block}), which is not a ternary code")
    codes = (stored.astype(np.int8) - 1).reshape(shape)
    return TernaryTensor(codes, _scale(where, name, raw, elements, codes))


def _scale(where, name: str, raw: np.ndarray, elements: int, codes: np.ndarray) -> float:
    start = elements // VALUES_PER_BYTE
    scale = float(np.asarray(raw[start:start + 4]).view("<f4")[0])
    if not np.any(codes):
        # bitnet.cpp stores max |W|, 0 for an all-zero tensor; any scale gives zero output.
        return scale if np.isfinite(scale) and scale > 0 else 1.0
    if not (np.isfinite(scale) and scale > 0):
        raise ModelFormatError(f"{where}: tensor {name} has the I2_S scale {scale!r}, "
                               f"expected a positive finite number")
    return scale
