"""Checks and conversions every checkpoint importer shares.

Each function takes ``where`` (the file or directory being read) so that every error
names it, as the CLI prints errors as one line without a traceback.
"""

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tritium.hw.config import ModelConfig
from ..errors import ModelFormatError
from ..model import Model, TernaryTensor, weight_quant

__all__ = ["make_config", "float_tensor", "check_shape", "ternary_from_values",
           "quantize_latent", "errors_naming", "validated", "read_json_object"]


def make_config(where, **fields) -> ModelConfig:
    """A ModelConfig, with its ValueError for nonsensical values turned into a file error."""
    try:
        return ModelConfig(**fields)
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{where}: bad model config: {exc}") from None


def check_shape(where, name: str, actual: tuple, expected: tuple):
    if tuple(actual) != tuple(expected):
        raise ModelFormatError(f"{where}: tensor {name} has shape {tuple(actual)}, "
                               f"expected {tuple(expected)}")


def _check_finite(where, name: str, array: np.ndarray):
    if not np.all(np.isfinite(array)):
        raise ModelFormatError(f"{where}: tensor {name} contains NaN or infinite values")


def float_tensor(where, name: str, array: np.ndarray, shape: tuple) -> np.ndarray:
    """An embedding, head or norm gain: right shape, finite, as float32."""
    check_shape(where, name, array.shape, shape)
    _check_finite(where, name, array)
    return np.asarray(array, dtype=np.float32)


def ternary_from_values(where, name: str, values: np.ndarray,
                        relative_tolerance: float) -> TernaryTensor:
    """Recover codes and scale from a tensor that stores {-s, 0, +s} as floats.

    The stored format may round ``s`` (an fp16 block scale, say), so the nonzero
    magnitudes may differ by ``relative_tolerance`` of their mean; more than that means
    the tensor holds several magnitudes and is not a one-scale ternary tensor.
    """
    values = np.asarray(values, dtype=np.float64)
    _check_finite(where, name, values)
    magnitudes = np.abs(values[values != 0])
    codes = np.sign(values).astype(np.int8)
    if magnitudes.size == 0:
        # All codes are zero, so any scale gives the same (zero) output.
        return TernaryTensor(codes, 1.0)
    scale = float(np.mean(magnitudes))
    low, high = float(magnitudes.min()), float(magnitudes.max())
    if high - low > relative_tolerance * scale:
        raise ModelFormatError(
            f"{where}: tensor {name} is not ternary: its nonzero magnitudes range from "
            f"{low:.6g} to {high:.6g}, expected one value (+-s)")
    return TernaryTensor(codes, scale)


def quantize_latent(where, name: str, latent: np.ndarray) -> TernaryTensor:
    """BitNet's weight_quant of latent float weights, with errors naming the tensor."""
    _check_finite(where, name, latent)
    return weight_quant(latent)


@contextmanager
def errors_naming(where):
    """Prefix ModelFormatErrors raised inside with ``where`` unless they name it already."""
    try:
        yield
    except ModelFormatError as exc:
        if str(exc).startswith(str(where)):
            raise
        raise ModelFormatError(f"{where}: {exc}") from None


def validated(model: Model, where) -> Model:
    """``model.validate()``, with errors naming the file the model comes from."""
    with errors_naming(where):
        return model.validate()


def read_json_object(path: Path) -> dict:
    """A JSON file holding an object (config.json and the like), every problem a
    ModelFormatError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a directory, expected a JSON file") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: not valid JSON (nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return data
