"""User-facing errors, for the host's modules: the classes are defined with the other
contracts in :mod:`tritium.hw.errors` (the boards raise them too)."""

from tritium.hw.errors import InputError, ModelFormatError, TritiumError

__all__ = ["TritiumError", "ModelFormatError", "InputError"]
