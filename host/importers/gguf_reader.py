"""A GGUF reader of tritium's own: the header, the metadata and the tensor table, every
count and length checked against the file before it is used; tensor data stays in a
memory map until a tensor is asked for.

Why not ``gguf.GGUFReader``: it refuses a whole file that holds one tensor of a type
it does not know (bitnet.cpp's I2_S, type 36, in Microsoft's released BitNet GGUF), it
allocates for whatever length a damaged header claims before checking the file holds
it, and it builds several Python objects per array item (8 s for the metadata of a
128k-token vocabulary; this reader takes well under a second).

The format (GGUF versions 2 and 3, little-endian): magic ``GGUF``, u32 version, u64
tensor count, u64 key count; the keys (string name, u32 value type, value); the
tensor table (string name, u32 dimension count, u64 per dimension fastest first, u32
ggml type, u64 offset relative to the data section); the data section starts at the
next multiple of ``general.alignment`` (32 when absent). A string is a u64 length and
that many UTF-8 bytes; an array is a u32 item type, a u64 count and the items.
"""

import bisect
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFValueType

from ..errors import ModelFormatError

__all__ = ["GGUFFile", "GGUFTensor", "open_gguf"]

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4                                    # GGML_MAX_DIMS

_V = GGUFValueType
# Struct format of each fixed-size value type; strings and arrays have a length.
_FORMATS = {_V.UINT8: "B", _V.INT8: "b", _V.UINT16: "H", _V.INT16: "h", _V.UINT32: "I",
            _V.INT32: "i", _V.FLOAT32: "f", _V.BOOL: "?", _V.UINT64: "Q", _V.INT64: "q",
            _V.FLOAT64: "d"}
_DTYPES = {kind: np.dtype("<" + fmt) for kind, fmt in _FORMATS.items() if kind != _V.BOOL}
_DTYPES[_V.BOOL] = np.dtype(np.bool_)


@dataclass(frozen=True)
class GGUFTensor:
    """One entry of the tensor table."""
    name: str
    shape: tuple            # NumPy order (slowest first), the reverse of ggml's ``ne``
    type: int               # the ggml type number, known to the ``gguf`` package or not
    offset: int             # absolute offset of the data in the file
    space: int              # bytes from ``offset`` to the next tensor's data or the end

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class GGUFValue:
    """A metadata value: its type (an array's is ``ARRAY``, with ``item_type``) and the
    value (int, float, bool, bytes for a string; a NumPy array for an array of numbers,
    a list of bytes for an array of strings, a list of GGUFValues for nested arrays)."""
    type: GGUFValueType
    value: object
    item_type: GGUFValueType = None


class GGUFFile:
    """A parsed GGUF file: ``fields`` (key -> GGUFValue), ``tensors`` (name ->
    GGUFTensor), ``size`` (bytes), ``alignment`` (of each tensor's data) and
    :meth:`data`, a tensor's bytes as a read-only NumPy view."""

    def __init__(self, path: Path, fields: dict, tensors: dict, alignment: int,
                 data: np.ndarray):
        self.path, self.fields, self.tensors, self._data = path, fields, tensors, data
        self.alignment, self.size = alignment, len(data)

    def data(self, tensor: GGUFTensor, size: int) -> np.ndarray:
        """The first ``size`` bytes of ``tensor``'s data (uint8); the caller has checked
        that they fit in ``tensor.space``."""
        return self._data[tensor.offset:tensor.offset + size]


def open_gguf(path) -> GGUFFile:
    """Parse ``path``'s header and tensor table; a file that is not GGUF, or whose
    header claims more than the file holds, is a :class:`ModelFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            if size < 8:
                raise ModelFormatError(f"{path}: not a readable GGUF file (truncated or "
                                       f"corrupt: {size} bytes)")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as header:
                fields, tensors, alignment = _Parser(path, header).parse()
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return GGUFFile(path, fields, tensors, alignment, data)


class _Parser:
    """Walks the header; each length is checked against the bytes left before anything
    is read or allocated in proportion to it."""

    def __init__(self, path: Path, data):
        self.path, self.data, self.offset = path, data, 0

    def fail(self, what: str):
        raise ModelFormatError(f"{self.path}: corrupt GGUF header: {what} at byte "
                               f"{self.offset}, the file has {len(self.data)} bytes")

    def number(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            self.fail("truncated")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return value

    def take(self, count: int, size: int, what: str) -> int:
        """Step over ``count`` items of ``size`` bytes; return where they start."""
        if count * size > len(self.data) - self.offset:
            self.fail(f"{what} claims {count:,} elements of {size} bytes, more than the file "
                      f"holds")
        start = self.offset
        self.offset += count * size
        return start

    def string(self, what: str) -> bytes:
        length = self.number("Q")
        start = self.take(length, 1, what)
        return bytes(self.data[start:self.offset])

    def value(self, kind: int, what: str) -> GGUFValue:
        if kind in _FORMATS:
            return GGUFValue(_V(kind), self.number(_FORMATS[kind]))
        if kind == _V.STRING:
            return GGUFValue(_V.STRING, self.string(what))
        if kind == _V.ARRAY:
            return self.array(what)
        self.fail(f"{what} has unknown value type {kind}")

    def array(self, what: str) -> GGUFValue:
        item, count = self.number("I"), self.number("Q")
        if item in _DTYPES:
            dtype = _DTYPES[item]
            start = self.take(count, dtype.itemsize, what)
            items = np.frombuffer(self.data, dtype, count, start).copy()
            return GGUFValue(_V.ARRAY, items, _V(item))
        if item not in (_V.STRING, _V.ARRAY):
            self.fail(f"{what} has unknown array item type {item}")
        # Each string or array item takes at least its 8-byte length: bound the count
        # before walking the items.
        if count * 8 > len(self.data) - self.offset:
            self.fail(f"{what} claims {count:,} items, more than the file holds")
        if item == _V.STRING:
            return GGUFValue(_V.ARRAY, [self.string(what) for _ in range(count)], _V.STRING)
        return GGUFValue(_V.ARRAY, [self.array(what) for _ in range(count)], _V.ARRAY)

    def parse(self) -> tuple:
        if bytes(self.data[:4]) != MAGIC:
            raise ModelFormatError(f"{self.path}: not a readable GGUF file (no GGUF magic "
                                   f"number at its start)")
        self.offset = 4
        version = self.number("I")
        if version not in VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            detail = ("big-endian GGUF files are not supported" if swapped in VERSIONS
                      else f"GGUF version {version} is not supported (expected 2 or 3)")
            raise ModelFormatError(f"{self.path}: {detail}")
        tensor_count, key_count = self.number("Q"), self.number("Q")
        # A key-value pair takes at least 13 bytes, a tensor description 24.
        if key_count * 13 + tensor_count * 24 > len(self.data) - self.offset:
            self.fail(f"{key_count:,} keys and {tensor_count:,} tensors claimed, more than "
                      f"the file holds")
        fields = {}
        for index in range(key_count):
            name = self.string(f"key {index}'s name").decode("utf-8", errors="replace")
            fields[name] = self.value(self.number("I"), f"key {index} ({name})")
        table = [self.tensor_entry(index) for index in range(tensor_count)]
        alignment = self.alignment(fields)
        return fields, self.tensors(table, alignment), alignment

    def tensor_entry(self, index: int) -> tuple:
        name = self.string(f"tensor {index}'s name").decode("utf-8", errors="replace")
        dims = self.number("I")
        if dims > MAX_DIMS:
            self.fail(f"tensor {index} claims {dims} dimensions (at most {MAX_DIMS})")
        start = self.take(dims, 8, f"tensor {index}'s shape")
        shape = struct.unpack_from(f"<{dims}Q", self.data, start)
        kind, offset = self.number("I"), self.number("Q")
        return name, tuple(int(d) for d in reversed(shape)), kind, offset

    def alignment(self, fields: dict) -> int:
        value = fields.get("general.alignment")
        if value is None:
            return DEFAULT_ALIGNMENT
        if value.type != _V.UINT32 or value.value < 1 or value.value & (value.value - 1):
            raise ModelFormatError(f"{self.path}: general.alignment must be a power of two "
                                   f"(u32), not {value.value!r}")
        return value.value

    def tensors(self, table: list, alignment: int) -> dict:
        data_start = -(-self.offset // alignment) * alignment
        size = len(self.data)
        starts = sorted({data_start + offset for _, _, _, offset in table} | {size})
        tensors = {}
        for name, shape, kind, offset in table:
            if name in tensors:
                raise ModelFormatError(f"{self.path}: tensor {name} is listed twice")
            start = data_start + offset
            if start > size:
                raise ModelFormatError(f"{self.path}: truncated: tensor {name} starts at "
                                       f"byte {start}, the file has {size} bytes")
            following = starts[bisect.bisect_right(starts, start)] if start < size else size
            tensors[name] = GGUFTensor(name, shape, kind, start, following - start)
        return tensors
