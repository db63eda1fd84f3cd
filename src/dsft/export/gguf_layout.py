"""Where each tensor of a GGUF file lies, read without building its metadata values.

``gguf.GGUFReader`` turns every metadata value into numpy views, one per element: for a DeepSeek tokenizer
that is 129,280 token strings plus as many merges, about 6 CPU-seconds of Python per file, whatever the
model's size, of which the tensor check (:mod:`dsft.export.gguf_readback`) needs nothing. This reads the
same header by the GGUF layout (magic, version, counts, key/value pairs, tensor infos, aligned data) and
steps over each value by its encoded length: fixed-size scalars and arrays of them in one step, strings by
their 8-byte length prefix. The tensors it returns are GGUFReader's: same names, types, shapes and
memory-mapped bytes (``tests/export/test_gguf_layout.py`` compares them on every tensor type the writer
writes), and it refuses what GGUFReader refuses (another magic or version, a duplicate key or tensor name,
an unknown value type, a bad ``general.alignment``), plus tensor data that runs past the end of the file or
starts off the alignment llama.cpp requires.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# numpy and gguf are imported where a file is read: importing the export package (the CLI, the dashboard)
# stays light.

# Value types by their codes in the GGUF specification (gguf.GGUFValueType): the encoded size in bytes of each
# fixed-size one (UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, UINT64, INT64, FLOAT64); STRING and
# ARRAY are sized by their contents.
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
# numpy element types GGUFReader views tensors of these ggml types as; every other type (BF16, the
# block-quantised ones) as bytes.
ELEMENT_DTYPES = {"F32": "float32", "F16": "float16", "F64": "float64", "I8": "int8", "I16": "int16",
                  "I32": "int32", "I64": "int64"}


class GGUFLayoutError(ValueError):
    """The file is not a GGUF file this module (and GGUFReader) can read; the message says where."""


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as the file stores it: ``shape`` outermost dimension first (numpy order, the reverse of
    ggml's), ``data`` a read-only memory-mapped view of the bytes from ``data_offset`` (in the file), typed for
    F32/F16 and bytes for BF16 and Q8_0."""

    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]
    data_offset: int
    data: Any


class _Cursor:
    """Reads little-endian values from the mapped file at an advancing offset, refusing reads past its end."""

    def __init__(self, data: Any) -> None:
        self.data, self.offset = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise GGUFLayoutError(f"the header ends at byte {len(self.data)}, inside a value at byte {self.offset}")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def uint32(self) -> int:
        return int(self.take("<I")[0])

    def uint64(self) -> int:
        return int(self.take("<Q")[0])

    def string(self) -> str:
        length = self.uint64()
        start = self.offset
        self.skip(length)
        try:
            return bytes(self.data[start:start + length]).decode("utf-8")
        except UnicodeDecodeError as error:
            raise GGUFLayoutError(f"the string at byte {start} is not UTF-8 ({error.reason})") from None

    def skip(self, size: int) -> None:
        if self.offset + size > len(self.data):
            raise GGUFLayoutError(f"a value at byte {self.offset} runs {size} bytes, past the end of the file")
        self.offset += size

    def value_type(self) -> int:
        raw = self.uint32()
        if raw not in SCALAR_SIZES and raw not in (STRING, ARRAY):
            raise GGUFLayoutError(f"unknown value type {raw} at byte {self.offset - 4}")
        return raw

    def skip_value(self, value_type: int) -> None:
        """Step over one encoded value: arrays of scalars in one step, strings by their length prefixes."""
        if value_type in SCALAR_SIZES:
            self.skip(SCALAR_SIZES[value_type])
        elif value_type == STRING:
            self.skip(self.uint64())
        else:  # ARRAY: item type, count, items
            item_type, count = self.value_type(), self.uint64()
            if item_type in SCALAR_SIZES:
                self.skip(SCALAR_SIZES[item_type] * count)
            else:
                for _ in range(count):
                    self.skip_value(item_type)


def _header(cursor: _Cursor) -> tuple[int, int]:
    """Check magic and version; return (tensor count, key/value count)."""
    from gguf import GGUF_MAGIC, READER_SUPPORTED_VERSIONS

    (magic,) = cursor.take("<I")
    if magic != GGUF_MAGIC:
        raise GGUFLayoutError(f"not a GGUF file (magic {magic:#010x})")
    version = cursor.uint32()
    if version & 0xFFFF == 0:
        raise GGUFLayoutError("a big-endian GGUF file; only little-endian files are read")
    if version not in READER_SUPPORTED_VERSIONS:
        raise GGUFLayoutError(f"GGUF version {version} (supported: {', '.join(map(str, READER_SUPPORTED_VERSIONS))})")
    return cursor.uint64(), cursor.uint64()


def _alignment(cursor: _Cursor, kv_count: int) -> int:
    """Step over every key/value pair; return ``general.alignment`` (the default without it)."""
    from gguf import GGUF_DEFAULT_ALIGNMENT, KEY_GENERAL_ALIGNMENT, GGUFValueType

    alignment, keys = GGUF_DEFAULT_ALIGNMENT, set()
    for _ in range(kv_count):
        key = cursor.string()
        if key in keys:
            raise GGUFLayoutError(f"key {key!r} appears twice")
        keys.add(key)
        value_type = cursor.value_type()
        if key != KEY_GENERAL_ALIGNMENT:
            cursor.skip_value(value_type)
            continue
        if value_type != GGUFValueType.UINT32:
            raise GGUFLayoutError(f"{KEY_GENERAL_ALIGNMENT} is {GGUFValueType(value_type).name}, not UINT32")
        alignment = cursor.uint32()
        if alignment == 0 or alignment & (alignment - 1):
            raise GGUFLayoutError(f"{KEY_GENERAL_ALIGNMENT} {alignment} is not a power of two")
    return alignment


def read_tensors(path: Path) -> list[StoredTensor]:
    """Every tensor of the GGUF file at ``path``, in file order, its data memory-mapped (nothing is read yet)."""
    import numpy as np
    from gguf import GGMLQuantizationType

    if path.stat().st_size == 0:  # numpy cannot map an empty file
        raise GGUFLayoutError("an empty file")
    data = np.memmap(path, mode="r")
    cursor = _Cursor(data)
    tensor_count, kv_count = _header(cursor)
    alignment = _alignment(cursor, kv_count)
    infos, names = [], set()
    for _ in range(tensor_count):
        name = cursor.string()
        if name in names:
            raise GGUFLayoutError(f"tensor {name!r} appears twice")
        names.add(name)
        dims = cursor.take(f"<{cursor.uint32()}Q")
        raw_type = cursor.uint32()
        try:
            tensor_type = GGMLQuantizationType(raw_type)
        except ValueError:
            raise GGUFLayoutError(f"tensor {name!r} has unknown ggml type {raw_type}") from None
        infos.append((name, tensor_type, tuple(int(d) for d in reversed(dims)), cursor.uint64()))
    start = -(-cursor.offset // alignment) * alignment  # tensor data begins at the next aligned byte
    return [_tensor(data, start, alignment, *info) for info in infos]


def _tensor(data: Any, start: int, alignment: int, name: str, tensor_type: Any, shape: tuple[int, ...],
            offset: int) -> StoredTensor:
    import numpy as np
    from gguf import GGML_QUANT_SIZES, quant_shape_to_byte_shape

    if offset % alignment:
        raise GGUFLayoutError(f"tensor {name!r} starts at data offset {offset}, not a multiple of {alignment}")
    if tensor_type not in GGML_QUANT_SIZES:
        raise GGUFLayoutError(f"tensor {name!r} has ggml type {tensor_type.name}, which has no block size")
    block, block_bytes = GGML_QUANT_SIZES[tensor_type]
    size = int(np.prod(shape, dtype=np.int64)) * block_bytes // block
    begin = start + offset
    if begin + size > len(data):
        raise GGUFLayoutError(f"tensor {name!r} runs to byte {begin + size}, past the end of the file "
                              f"({len(data)} bytes)")
    dtype = ELEMENT_DTYPES.get(tensor_type.name)
    if dtype is None:
        try:
            view_shape = quant_shape_to_byte_shape(shape, tensor_type)
        except ValueError as error:
            raise GGUFLayoutError(f"tensor {name!r}: {error}") from None
        return StoredTensor(name, tensor_type, shape, begin, data[begin:begin + size].reshape(view_shape))
    return StoredTensor(name, tensor_type, shape, begin, data[begin:begin + size].view(dtype).reshape(shape))
