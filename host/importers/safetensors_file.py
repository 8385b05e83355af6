"""A small reader for ``.safetensors`` files.

The ``safetensors`` package's NumPy API cannot return bf16 tensors (NumPy has no
bf16 type), and BitNet checkpoints are mostly bf16. The format is simple enough to
read directly: an 8-byte little-endian header length, a JSON header mapping each
tensor name to its dtype, shape and byte range, then the raw little-endian data.
Reading it ourselves also lets a truncated or damaged file fail with a message that
names the file and the tensor, and reads each tensor only when it is asked for.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError

__all__ = ["TensorEntry", "read_header", "read_tensor", "SafetensorsCheckpoint",
           "FLOAT_DTYPES"]

# dtype name in the header -> NumPy dtype of the stored bytes (bf16 is read as uint16).
_STORAGE = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    name: str
    dtype: str
    shape: tuple
    start: int          # absolute byte offsets in the file
    end: int


def read_header(path: Path) -> dict:
    """Map tensor name -> TensorEntry, after checking every entry fits in the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: is not a file (a directory?), expected a "
                               f"safetensors file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            length_bytes = file.read(8)
            if len(length_bytes) < 8:
                raise ModelFormatError(f"{path}: truncated: {size} bytes is too short for "
                                       f"a safetensors file")
            header_length = int.from_bytes(length_bytes, "little")
            if header_length > size - 8:
                raise ModelFormatError(f"{path}: truncated or not a safetensors file: "
                                       f"header length {header_length} exceeds the file "
                                       f"size {size}")
            header_bytes = file.read(header_length)
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(header_bytes)
    except RecursionError:
        raise ModelFormatError(f"{path}: not a safetensors file: unreadable header "
                               f"(JSON nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: not a safetensors file: unreadable header "
                               f"({exc})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path}: not a safetensors file: header is not a JSON object")
    data_start = 8 + header_length
    return {name: _entry(path, name, info, data_start, size)
            for name, info in header.items() if name != "__metadata__"}


def _entry(path: Path, name: str, info, data_start: int, size: int) -> TensorEntry:
    try:
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not (isinstance(dtype, str) and isinstance(shape, list)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(_is_int(value) for value in shape + offsets)):
            raise TypeError
        shape, (start, end) = tuple(shape), offsets
    except (KeyError, TypeError, ValueError):
        raise ModelFormatError(f"{path}: tensor {name} has a malformed header entry "
                               f"{str(info)[:200]}") from None
    if any(dim < 0 for dim in shape):
        raise ModelFormatError(f"{path}: tensor {name} has a negative dimension in shape "
                               f"{list(shape)}")
    if dtype not in _STORAGE:
        raise ModelFormatError(f"{path}: tensor {name} has dtype {dtype}, which tritium "
                               f"cannot read")
    expected = math.prod(shape) * np.dtype(_STORAGE[dtype]).itemsize
    if end - start != expected or start < 0:
        raise ModelFormatError(f"{path}: tensor {name} spans bytes {start}..{end}, but "
                               f"{dtype} {list(shape)} needs {expected} bytes")
    if data_start + end > size:
        raise ModelFormatError(f"{path}: truncated: tensor {name} ends at byte "
                               f"{data_start + end}, the file has {size} bytes")
    return TensorEntry(path, name, dtype, shape, data_start + start, data_start + end)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_tensor(entry: TensorEntry) -> np.ndarray:
    """The tensor's values; bf16 comes back as float32 (exactly: bf16 is its upper half)."""
    with open(entry.file, "rb") as file:
        file.seek(entry.start)
        raw = file.read(entry.end - entry.start)
    if len(raw) != entry.end - entry.start:
        raise ModelFormatError(f"{entry.file}: truncated while reading tensor {entry.name}")
    array = np.frombuffer(raw, dtype=_STORAGE[entry.dtype]).reshape(entry.shape)
    if entry.dtype == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


class SafetensorsCheckpoint:
    """All ``*.safetensors`` files of a directory (one file or shards) as one name space."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        files = sorted(self.directory.glob("*.safetensors"))
        if not files:
            raise ModelFormatError(f"{self.directory}: no .safetensors files next to "
                                   f"config.json")
        self._entries = {}
        for file in files:
            for name, entry in read_header(file).items():
                if name in self._entries:
                    raise ModelFormatError(f"{file}: tensor {name} is also in "
                                           f"{self._entries[name].file.name}")
                self._entries[name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> TensorEntry:
        if name not in self._entries:
            raise ModelFormatError(f"{self.directory}: tensor {name} is missing")
        return self._entries[name]

    def read(self, name: str) -> np.ndarray:
        return read_tensor(self.entry(name))
