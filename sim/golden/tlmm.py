"""Ternary table-lookup matrix multiply (TLMM), as the engine computes it.

For a group of G int8 activations a_0..a_{G-1}, the engine builds a table of the
partial sums ``sum_k w_k * a_k`` for every ternary pattern w, indexed by the weight
code ``c = sum_k (w_k + 1) * 3**k``. A weight row is then a sequence of codes, and each
output is the sum of one table look-up per group. The symmetric
("half") table stores only the codes from the all-zero pattern upwards: negating
every weight maps code c to 3**G - 1 - c and negates the partial sum.

These functions are the golden model of that arithmetic; they equal the plain integer
matmul exactly, which the tests check.
"""

import numpy as np

__all__ = ["ternary_codes", "build_tables", "lookup", "tlmm_matmul", "int_matmul"]

TABLE_MODES = ("full", "half")


def _pattern_digits(group: int) -> np.ndarray:
    """(3**G, G) ternary weights of every code: digit k of code c, minus one."""
    codes = np.arange(3 ** group)
    return np.stack([(codes // 3 ** k) % 3 - 1 for k in range(group)], axis=1)


def ternary_codes(weights: np.ndarray, group: int) -> np.ndarray:
    """Codes of a (N, K) ternary matrix, K padded with zero weights to a multiple of G."""
    n, k = weights.shape
    padded = np.zeros((n, -(-k // group) * group), dtype=np.int64)
    padded[:, :k] = weights
    digits = padded.reshape(n, -1, group) + 1
    return np.sum(digits * 3 ** np.arange(group), axis=-1)


def build_tables(acts: np.ndarray, group: int, mode: str = "full") -> np.ndarray:
    """Tables for (T, K) int8 activations: shape (T, K/G, 3**G) or (T, K/G, (3**G+1)/2)."""
    if mode not in TABLE_MODES:
        raise ValueError(f"table mode must be one of {TABLE_MODES}, not {mode!r}")
    t, k = acts.shape
    padded = np.zeros((t, -(-k // group) * group), dtype=np.int64)
    padded[:, :k] = acts
    groups = padded.reshape(t, -1, group)
    tables = groups @ _pattern_digits(group).T                 # (T, K/G, 3**G)
    if mode == "half":
        tables = tables[..., (3 ** group - 1) // 2:]
    return tables


def lookup(tables: np.ndarray, codes: np.ndarray, group: int, mode: str = "full") -> np.ndarray:
    """Accumulate look-ups: tables (T, K/G, entries), codes (N, K/G) -> (T, N) int64."""
    center = (3 ** group - 1) // 2
    if mode == "half":
        sign = np.where(codes < center, -1, 1)
        index = np.where(codes < center, 2 * center - codes, codes) - center
    else:
        sign, index = np.ones_like(codes), codes
    groups = np.arange(codes.shape[1])
    looked_up = tables[:, groups[None, :], index]              # (T, N, K/G)
    return np.sum(looked_up * sign[None], axis=-1)


def tlmm_matmul(acts: np.ndarray, weights: np.ndarray, group: int = 3,
                mode: str = "full") -> np.ndarray:
    """``acts @ weights.T`` for int8 acts (T, K) and ternary weights (N, K), by table look-up."""
    codes = ternary_codes(weights, group)
    return lookup(build_tables(acts, group, mode), codes, group, mode)


def int_matmul(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The plain integer matmul the tables must reproduce: (T, K) x (N, K)^T -> (T, N)."""
    return np.asarray(acts, dtype=np.int64) @ np.asarray(weights, dtype=np.int64).T
