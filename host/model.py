"""The in-memory model every importer produces and every backend consumes.

A :class:`Model` holds a :class:`~tritium.hw.config.ModelConfig`, the float embedding,
the float norm gains and the ternary linears as integer codes in {-1, 0, +1} with one
float scale per tensor (``W ~= codes * scale``, ``scale = mean|W_latent|``). The
project's own ``.npz`` format stores exactly these arrays.
"""

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritium.hw.config import ModelConfig
from .errors import ModelFormatError

__all__ = ["TernaryTensor", "Layer", "Model", "weight_quant", "NPZ_FORMAT_VERSION"]

NPZ_FORMAT_VERSION = 1
NORM_NAMES = ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm")
LINEAR_NAMES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


@dataclass
class TernaryTensor:
    """A ternary weight matrix: ``codes`` (int8, shape (out, in)) times ``scale``."""
    codes: np.ndarray
    scale: float

    def dequantize(self) -> np.ndarray:
        return self.codes.astype(np.float64) * self.scale

    def validate(self, name: str, shape: tuple):
        if self.codes.shape != tuple(shape):
            raise ModelFormatError(f"tensor {name} has shape {self.codes.shape}, "
                                   f"expected {tuple(shape)}")
        if not np.issubdtype(self.codes.dtype, np.integer) or \
                np.any((self.codes < -1) | (self.codes > 1)):
            raise ModelFormatError(f"tensor {name} is not ternary: codes outside {{-1, 0, 1}}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ModelFormatError(f"tensor {name} has an invalid scale {self.scale!r} "
                                   f"(must be positive and finite)")


def weight_quant(latent: np.ndarray) -> TernaryTensor:
    """BitNet b1.58 weight quantization of a latent float matrix (absmean, round, clamp)."""
    latent = np.asarray(latent, dtype=np.float64)
    if not np.all(np.isfinite(latent)):
        raise ModelFormatError("latent weights contain NaN or infinite values")
    scale = max(float(np.mean(np.abs(latent))), 1e-5)
    codes = np.clip(np.rint(latent / scale), -1, 1).astype(np.int8)
    return TernaryTensor(codes, scale)


@dataclass
class Layer:
    attn_norm: np.ndarray
    wq: TernaryTensor
    wk: TernaryTensor
    wv: TernaryTensor
    attn_sub_norm: np.ndarray
    wo: TernaryTensor
    ffn_norm: np.ndarray
    w_gate: TernaryTensor
    w_up: TernaryTensor
    ffn_sub_norm: np.ndarray
    w_down: TernaryTensor


def _check_float(name: str, array: np.ndarray, shape: tuple):
    dtype = np.asarray(array).dtype
    if dtype.kind not in "fiu":         # strings, booleans, objects: not weights
        raise ModelFormatError(f"tensor {name} has dtype {dtype}, expected numbers")
    if array.shape != tuple(shape):
        raise ModelFormatError(f"tensor {name} has shape {array.shape}, expected {tuple(shape)}")
    if not np.all(np.isfinite(array)):
        raise ModelFormatError(f"tensor {name} contains NaN or infinite values")


@dataclass
class Model:
    config: ModelConfig
    embedding: np.ndarray              # (vocab, hidden) float32
    layers: list
    output_norm: np.ndarray            # (hidden,) float32
    lm_head: np.ndarray = None         # (vocab, hidden) float32; None when tied

    @classmethod
    def random(cls, config: ModelConfig, seed: int = 0) -> "Model":
        """A model with random weights of the given shape, for tests and benchmarks.

        Latent weights are Gaussian and quantized with :func:`weight_quant`; norm gains
        are near one, as in trained checkpoints.
        """
        rng = np.random.default_rng(seed)

        def gains(n):
            return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

        norm_sizes = {"attn_norm": config.hidden, "attn_sub_norm": config.q_dim,
                      "ffn_norm": config.hidden, "ffn_sub_norm": config.ffn}
        layers = []
        for _ in range(config.layers):
            parts = {name: gains(size) for name, size in norm_sizes.items()}
            for name, shape in config.linear_shapes().items():
                parts[name] = weight_quant(rng.standard_normal(shape) * 0.02)
            layers.append(Layer(**parts))
        embedding = rng.standard_normal((config.vocab_size, config.hidden)).astype(np.float32)
        head = None if config.tied_embedding else \
            (0.1 * rng.standard_normal((config.vocab_size, config.hidden))).astype(np.float32)
        return cls(config, embedding, layers, gains(config.hidden), head).validate()

    @property
    def head(self) -> np.ndarray:
        return self.embedding if self.lm_head is None else self.lm_head

    def validate(self) -> "Model":
        """Check every shape, that linears are ternary and that scales are finite."""
        cfg = self.config
        if len(self.layers) != cfg.layers:
            raise ModelFormatError(f"model has {len(self.layers)} layers, config says {cfg.layers}")
        _check_float("embedding", self.embedding, (cfg.vocab_size, cfg.hidden))
        _check_float("output_norm", self.output_norm, (cfg.hidden,))
        if self.lm_head is not None:
            _check_float("lm_head", self.lm_head, (cfg.vocab_size, cfg.hidden))
        norm_sizes = {"attn_norm": cfg.hidden, "attn_sub_norm": cfg.q_dim,
                      "ffn_norm": cfg.hidden, "ffn_sub_norm": cfg.ffn}
        shapes = cfg.linear_shapes()
        for i, layer in enumerate(self.layers):
            for name in NORM_NAMES:
                _check_float(f"layers.{i}.{name}", getattr(layer, name), (norm_sizes[name],))
            for name in LINEAR_NAMES:
                getattr(layer, name).validate(f"layers.{i}.{name}", shapes[name])
        return self

    # -- the project's own .npz format ------------------------------------------------

    def save_npz(self, path):
        arrays = {
            "format_version": np.array(NPZ_FORMAT_VERSION),
            "config": np.array(self.config.to_json()),
            "embedding": self.embedding.astype(np.float32),
            "output_norm": self.output_norm.astype(np.float32),
        }
        if self.lm_head is not None:
            arrays["lm_head"] = self.lm_head.astype(np.float32)
        for i, layer in enumerate(self.layers):
            for name in NORM_NAMES:
                arrays[f"layers.{i}.{name}"] = getattr(layer, name).astype(np.float32)
            for name in LINEAR_NAMES:
                tensor = getattr(layer, name)
                arrays[f"layers.{i}.{name}.codes"] = tensor.codes.astype(np.int8)
                arrays[f"layers.{i}.{name}.scale"] = np.array(tensor.scale, dtype=np.float64)
        np.savez_compressed(path, **arrays)

    @staticmethod
    def read_npz_config(path) -> ModelConfig:
        """The ModelConfig of a .npz model, without reading its tensors."""
        path = Path(path)
        arrays = _read_npz(path, keys=("format_version", "config"))

        def take(key):
            if key not in arrays:
                raise ModelFormatError(f"{path}: tensor {key} is missing")
            return arrays[key]

        return _npz_config(path, take)

    @classmethod
    def load_npz(cls, path) -> "Model":
        path = Path(path)
        arrays = _read_npz(path)

        def take(key):
            if key not in arrays:
                raise ModelFormatError(f"{path}: tensor {key} is missing")
            return arrays[key]

        config = _npz_config(path, take)
        layers = []
        for i in range(config.layers):
            parts = {name: take(f"layers.{i}.{name}") for name in NORM_NAMES}
            for name in LINEAR_NAMES:
                key = f"layers.{i}.{name}.scale"
                parts[name] = TernaryTensor(take(f"layers.{i}.{name}.codes"),
                                            _scalar(path, key, take(key), "f"))
            layers.append(Layer(**parts))
        model = cls(config, take("embedding"), layers, take("output_norm"),
                    arrays.get("lm_head"))
        return model.validate()


def _read_npz(path: Path, keys=None) -> dict:
    """The arrays of a .npz file (only ``keys`` of them, if given)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files if keys is None or key in keys}
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ModelFormatError(f"{path}: not a readable tritium .npz model ({exc})") from None


def _scalar(path: Path, key: str, array: np.ndarray, kind: str):
    """A scalar entry of a .npz file: an integer (``kind`` "i") or a real number ("f")."""
    if array.shape != () or array.dtype.kind not in ("iu" if kind == "i" else "iuf"):
        what = "an integer" if kind == "i" else "a number"
        raise ModelFormatError(f"{path}: {key} must be {what} (a scalar), not a "
                               f"{array.dtype} array of shape {array.shape}")
    return int(array) if kind == "i" else float(array)


def _npz_config(path: Path, take) -> ModelConfig:
    version = _scalar(path, "format_version", take("format_version"), "i")
    if version != NPZ_FORMAT_VERSION:
        raise ModelFormatError(f"{path}: .npz format version {version} is not supported "
                               f"(expected {NPZ_FORMAT_VERSION})")
    config = take("config")
    if config.shape != () or config.dtype.kind != "U":
        raise ModelFormatError(f"{path}: config must be a JSON string, not a "
                               f"{config.dtype} array of shape {config.shape}")
    try:
        data = json.loads(str(config))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return ModelConfig.from_dict(data)
    except RecursionError:
        raise ModelFormatError(f"{path}: bad model config: JSON nested too deeply") from None
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: bad model config: {exc}") from None
