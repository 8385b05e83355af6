"""User-facing errors: the CLI prints them as one line and exits non-zero.

A contract like the configs: the host, the boards and the CLI all raise and catch these
classes, so they live where every layer may import them."""

__all__ = ["TritiumError", "ModelFormatError", "InputError"]


class TritiumError(Exception):
    """An error caused by the user's input, reported without a traceback."""


class ModelFormatError(TritiumError):
    """A model file or checkpoint that cannot be read as the model it claims to be."""


class InputError(TritiumError):
    """A prompt, token list or option that the model cannot run."""
