"""dsft.export.gguf_layout reads GGUF tensors as gguf.GGUFReader does, stepping over metadata values by length.

Checked against GGUFReader itself: on the writer's own files (tiny DeepSeek-V3 at q8_0, which holds F32, F16
and Q8_0 tensors, and at bfloat16, which holds BF16) and on a file holding every metadata value type (nested
arrays, strings, a custom alignment) and more tensor types than the writer writes. A file it cannot read is
refused with what is wrong, as GGUFReader refuses it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from dsft.export import gguf_export
from dsft.export.gguf_layout import SCALAR_SIZES, STRING, ARRAY, GGUFLayoutError, read_tensors
from dsft.models.loading import load_model, load_tokenizer

Q = gguf.GGMLQuantizationType


def assert_read_as_gguf_reader_reads(path: Path) -> set[str]:
    """Every tensor the same (name, type, shape, dtype, offset in the file, bytes); return the types seen."""
    expected = gguf.GGUFReader(str(path)).tensors
    found = read_tensors(path)
    assert [tensor.name for tensor in found] == [tensor.name for tensor in expected]
    for ours, theirs in zip(found, expected):
        assert ours.tensor_type == theirs.tensor_type, ours.name
        assert ours.shape == tuple(int(d) for d in reversed(theirs.shape.tolist())), ours.name
        assert (ours.data.dtype, ours.data.shape) == (theirs.data.dtype, theirs.data.shape), ours.name
        assert ours.data_offset == theirs.data_offset, ours.name
        assert np.array_equal(ours.data, theirs.data, equal_nan=True), ours.name
    return {tensor.tensor_type.name for tensor in found}


def test_scalar_sizes_are_the_specifications() -> None:
    for value_type, np_type in gguf.GGUFReader.gguf_scalar_to_np.items():
        assert SCALAR_SIZES[int(value_type)] == np.dtype(np_type).itemsize, value_type.name
    assert set(SCALAR_SIZES) | {STRING, ARRAY} == {int(value_type) for value_type in gguf.GGUFValueType}
    assert (STRING, ARRAY) == (gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY)


@pytest.fixture(scope="module")
def tiny_v3(tiny_model_dir) -> tuple[Any, Any, Path]:
    model_dir = tiny_model_dir("tiny-deepseek-v3")
    return load_model(model_dir, dtype="float32", device="cpu"), load_tokenizer(model_dir), model_dir


@pytest.mark.parametrize(("dtype", "types"), [("q8_0", {"F32", "F16", "Q8_0"}), ("bfloat16", {"F32", "BF16"})])
def test_the_writers_files_are_read_as_gguf_reader_reads_them(tiny_v3, tmp_path, dtype, types) -> None:
    """The 129,280 tokens and the merges of the real DeepSeek tokenizer are stepped over, not read."""
    model, tokenizer, model_dir = tiny_v3
    path = tmp_path / "model.gguf"
    gguf_export.write_gguf(model, tokenizer, model_dir, path, dtype, "test")
    assert assert_read_as_gguf_reader_reads(path) == types


def write_every_value_type(path: Path, alignment: int = 64) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_custom_alignment(alignment)
    for kind in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"):
        getattr(writer, f"add_{kind}")(f"test.{kind}", 7)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "零一 ✓")
    writer.add_array("test.strings", ["a", "", "合并 merges", "x" * 300])
    writer.add_array("test.floats", [0.5, 1.5, 2.5])
    writer.add_array("test.ints", list(range(1000)))
    writer.add_key_value("test.nested", [[1, 2], [3], [4, 5, 6]], gguf.GGUFValueType.ARRAY)
    writer.add_key_value("test.nested_strings", [["a", "bc"], ["d"]], gguf.GGUFValueType.ARRAY)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 64)).astype(np.float32)
    writer.add_tensor("f32", values)
    writer.add_tensor("f16", values.astype(np.float16))
    writer.add_tensor("bf16", gguf.quants.quantize(values, Q.BF16), raw_dtype=Q.BF16)
    writer.add_tensor("q8_0", gguf.quants.quantize(values, Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.add_tensor("i32", np.arange(5, dtype=np.int32))
    writer.add_tensor("vector", np.ones(7, dtype=np.float32))  # odd sizes: the next tensor is padded to alignment
    writer.add_tensor("i8", np.arange(4 * 3 * 2, dtype=np.int8).reshape(4, 3, 2))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("alignment", [32, 64, 256])
def test_every_value_type_and_alignment_is_stepped_over_as_gguf_reader_reads_it(tmp_path, alignment) -> None:
    path = tmp_path / "all.gguf"
    write_every_value_type(path, alignment)
    assert assert_read_as_gguf_reader_reads(path) == {"F32", "F16", "BF16", "Q8_0", "I32", "I8"}


def header_end(path: Path) -> int:
    """The byte after the last tensor info, as GGUFReader parses it."""
    last = gguf.GGUFReader(str(path)).tensors[-1].field
    return last.offset + sum(int(part.nbytes) for part in last.parts)


def value_type_at(path: Path, key: str) -> int:
    """Where the value type of ``key`` is encoded (after the key's 8-byte length and its bytes)."""
    return gguf.GGUFReader(str(path)).fields[key].offset + 8 + len(key.encode())


def corrupt(path: Path, offset: int, data: bytes) -> None:
    content = bytearray(path.read_bytes())
    content[offset:offset + len(data)] = data
    path.write_bytes(bytes(content))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda path: corrupt(path, 0, b"GGML"), "not a GGUF file"),
    (lambda path: corrupt(path, 4, struct.pack("<I", 99)), "GGUF version 99"),
    (lambda path: corrupt(path, value_type_at(path, "test.ints"), struct.pack("<I", 13)), "unknown value type 13"),
    (lambda path: corrupt(path, value_type_at(path, "general.alignment") + 4, struct.pack("<I", 48)),
     "general.alignment 48 is not a power of two"),
    (lambda path: path.write_bytes(path.read_bytes()[:header_end(path) - 3]), "the header ends at byte"),
    (lambda path: path.write_bytes(path.read_bytes()[:gguf.GGUFReader(str(path)).tensors[-1].data_offset + 23]),
     "tensor 'i8' runs to byte"),  # its 24 bytes, one of them cut off
    (lambda path: path.write_bytes(b""), "an empty file"),
])
def test_a_file_gguf_reader_refuses_is_refused_with_what_is_wrong(tmp_path, damage, message) -> None:
    path = tmp_path / "all.gguf"
    write_every_value_type(path)
    damage(path)
    with pytest.raises(GGUFLayoutError, match=message):
        read_tensors(path)
    with pytest.raises((ValueError, IndexError)):
        gguf.GGUFReader(str(path))
