"""Exact integer matrix products on floating-point BLAS.

NumPy multiplies integer matrices without BLAS, several times slower than a float
product of the same shape. A float product of integer-valued matrices is nevertheless exact when every
partial sum that BLAS forms is an integer the float type holds exactly: at most
``2**24`` in magnitude for float32, ``2**53`` for float64. Each addition (or fused
multiply-add) then rounds an exact integer to itself. Whatever order BLAS adds in, a
partial sum is a sum of some of the ``K`` products of the contraction, so its magnitude
is at most ``K * peak(a) * peak(b)``. :func:`exact_matmul` cuts the contraction into
slices short enough for that bound and adds the slices' results in int64, so its result
is the integer product bit for bit, whatever the BLAS, the batch size or the thread
count.

The golden model's ternary linears, attention dot products and LM head, and the float
reference's ternary linears, are products of this kind (docs/numerics.md section 11).
"""

import numpy as np

from tritium.hw.config import ACT_CODE_PEAK

__all__ = ["EXACT_INTEGER", "exact_inputs", "exact_matmul", "ternary_operand", "ternary_matmul"]

EXACT_INTEGER = {np.dtype(np.float32): 2 ** 24, np.dtype(np.float64): 2 ** 53}
"""The largest magnitude below which every integer is exact in each float type."""


def exact_inputs(dtype, peak_a: int, peak_b: int) -> int:
    """How many products a slice of the contraction may add in ``dtype`` when the factors
    are bounded by ``peak_a`` and ``peak_b`` (at least one)."""
    return max(1, EXACT_INTEGER[np.dtype(dtype)] // (int(peak_a) * int(peak_b)))


def exact_matmul(a: np.ndarray, b: np.ndarray, peak_a: int, peak_b: int) -> np.ndarray:
    """``a @ b`` (``np.matmul``: batched, contraction over ``a``'s last axis and ``b``'s
    second to last) of integer-valued float arrays of one dtype, with ``|a| <= peak_a``
    and ``|b| <= peak_b``, as the exact int64 result.

    Exact for the reason in the module docstring: each slice of the contraction holds at
    most :func:`exact_inputs` products, and the slices are added as int64.
    """
    if a.dtype != b.dtype or a.dtype not in EXACT_INTEGER:
        raise TypeError(f"exact_matmul takes two float32 or two float64 arrays, not "
                        f"{a.dtype} and {b.dtype}")
    inputs = a.shape[-1]
    step = exact_inputs(a.dtype, peak_a, peak_b)
    if inputs <= step:
        return (a @ b).astype(np.int64)
    result = None
    for start in range(0, inputs, step):
        part = (a[..., start:start + step] @ b[..., start:start + step, :]).astype(np.int64)
        result = part if result is None else result + part
    return result


def ternary_operand(codes: np.ndarray) -> np.ndarray:
    """Ternary weight codes W (N, K) in {-1, 0, 1} as the operand of
    :func:`ternary_matmul`: ``W.T`` in float32, contiguous (4 bytes per weight; made once
    and kept by the caller). A matrix-vector product streams this layout about a fifth
    faster than ``W`` itself (OpenBLAS; docs/performance.md, "The golden model on the
    host")."""
    return np.ascontiguousarray(np.asarray(codes).T, dtype=np.float32)


def ternary_matmul(codes: np.ndarray, operand: np.ndarray) -> np.ndarray:
    """``codes @ W.T`` for int8 activation codes (T, K) and a ternary matrix W (N, K)
    given as its :func:`ternary_operand`: the exact (T, N) int64 product. The factors are
    bounded by 128 and 1, so float32 slices of up to 131,072 inputs are exact."""
    return exact_matmul(np.asarray(codes, dtype=np.float32), operand, ACT_CODE_PEAK, 1)
