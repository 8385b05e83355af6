"""User-facing errors: the CLI prints them as one line and exits non-zero."""

__all__ = ["TritiumError", "ModelFormatError", "InputError"]


class TritiumError(Exception):
    """An error caused by the user's input, reported without a traceback."""


class ModelFormatError(TritiumError):
    """A model file or checkpoint that cannot be read as the model it claims to be."""


class InputError(TritiumError):
    """A prompt, token list or option that the model cannot run."""
