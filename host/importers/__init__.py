"""Model import: one entry point, :func:`load_model`, for every checkpoint format.

``source`` is either the name of a preset that ships weights (``"tiny"``) or a path:

- a directory with ``config.json`` and ``*.safetensors`` (Hugging Face BitNet), or the
  ``config.json`` / a ``.safetensors`` file inside one;
- a ``.gguf`` file (llama.cpp's ``bitnet`` architectures);
- a ``.npz`` file (the project's own format, :meth:`Model.save_npz`).

Every model comes back validated; every problem is a one-line
:class:`~tritium.host.errors.ModelFormatError` naming the file. docs/model_import.md
describes the formats and the name mappings.
"""

from pathlib import Path

from tritium.hw.config import MODEL_PRESETS, ModelConfig
from ..errors import ModelFormatError
from ..model import Model
from .common import errors_naming, validated
from .gguf_file import load_gguf, read_gguf_config
from .hf import load_hf, read_hf_config

__all__ = ["load_model", "read_model_config", "SHIPPED_MODELS"]

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
SHIPPED_MODELS = {"tiny": MODELS_DIR / "tiny.npz"}
"""Preset name -> the weights shipped inside the package."""


def load_model(source, i2s_layout: str = None, progress=None) -> Model:
    """Load and validate a model from a shipped preset name or a checkpoint path.

    A shipped preset's name wins over a file or directory of the same name, so that
    ``tiny`` means the same model wherever it is run from (write ``./tiny`` for the path).
    ``i2s_layout`` (``"x86"`` or ``"arm"``) says how a GGUF's I2_S tensors are packed,
    which the file does not record (:func:`~.gguf_file.load_gguf`). ``progress(done,
    total)``, if given, hears each decoder layer read from a Hugging Face directory or a
    GGUF file (a full-size checkpoint takes a while; a ``.npz`` is read at once).
    """
    if isinstance(source, str) and source in SHIPPED_MODELS:
        return _load_shipped(source)
    path = Path(source)
    if not path.exists():
        raise _not_found(str(source))
    if path.is_dir():
        return _load_hf_directory(path, progress)
    if path.suffix == ".gguf":
        return validated(load_gguf(path, i2s_layout, progress), path)
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.suffix == ".safetensors" or path.name == "config.json":
        return _load_hf_directory(path.parent, progress)
    raise ModelFormatError(
        f"{path}: unknown model format (expected a Hugging Face directory with "
        f"config.json, a .gguf file, a .npz file, or a preset name: "
        f"{', '.join(SHIPPED_MODELS)})")


def read_model_config(source) -> ModelConfig:
    """The shape of a model, without its weights: a preset name (``MODEL_PRESETS``,
    shipped weights or not) or a checkpoint path of any format :func:`load_model`
    reads, through the importers' own config parsing (Hugging Face ``config.json``,
    GGUF metadata and tensor shapes, the ``.npz`` config entry)."""
    if isinstance(source, str) and source in MODEL_PRESETS:
        return MODEL_PRESETS[source]
    path = Path(source)
    if not path.exists():
        raise ModelFormatError(f"{source}: no such file or directory, and not a model "
                               f"preset ({', '.join(MODEL_PRESETS)})")
    if path.is_dir() or path.suffix == ".safetensors" or path.name == "config.json":
        directory = path if path.is_dir() else path.parent
        if not (directory / "config.json").is_file():
            raise ModelFormatError(f"{directory}: unknown model format: a directory needs "
                                   f"config.json (Hugging Face layout)")
        return read_hf_config(directory)
    if path.suffix == ".gguf":
        return read_gguf_config(path)
    if path.suffix == ".npz":
        return Model.read_npz_config(path)
    raise ModelFormatError(
        f"{path}: unknown model format (expected a Hugging Face directory with "
        f"config.json, a .gguf file, a .npz file, or a preset name: "
        f"{', '.join(MODEL_PRESETS)})")


def _load_shipped(name: str) -> Model:
    weights = SHIPPED_MODELS[name]
    if not weights.is_file():
        raise ModelFormatError(f"{weights}: the shipped weights of preset {name!r} are "
                               f"missing from this installation")
    return _load_npz(weights)


def _not_found(name: str) -> ModelFormatError:
    if name in MODEL_PRESETS:
        return ModelFormatError(f"{name}: preset has no shipped weights; download its "
                                f"checkpoint and pass its path")
    return ModelFormatError(f"{name}: no such file or directory, and not a preset with "
                            f"shipped weights ({', '.join(SHIPPED_MODELS)})")


def _load_npz(path: Path) -> Model:
    with errors_naming(path):
        return Model.load_npz(path)


def _load_hf_directory(directory: Path, progress=None) -> Model:
    if not (directory / "config.json").is_file():
        raise ModelFormatError(f"{directory}: unknown model format: a directory needs "
                               f"config.json and *.safetensors (Hugging Face layout)")
    return validated(load_hf(directory, progress), directory)
