"""Read a written GGUF back, tensor by tensor, and compare each tensor with the one the converter made of it.

The logit comparison (:mod:`dsft.export.gguf_verify`) checks the file as llama.cpp runs it, but its bounds
must allow for rounding, and at q8_0 a MoE model's rounding reroutes whole tokens: a layout defect confined
to one tensor then stays inside the bound (tiny DeepSeek-V3, ``attn_k_b`` reshaped instead of transposed:
3 of 79 positions over the limit, as many as the correct file). This check needs no such allowance. Each
tensor as stored, dequantised with the ``gguf`` package, must equal the tensor the converter yields for it
(:func:`dsft.export.gguf_arch.converted_tensors`, the one owner of names, splits and transposes) within
what rounding to the tensor's ggml type can do at most, derived from the type itself:

    ||stored - converted||_2 <= relative * ||converted||_2 + absolute * sqrt(elements)

A misplaced tensor is another tensor's values, or the right values in the wrong order: an error of the
order of the tensor's own norm (relative RMS error ~1.4 for two unrelated halves), 60 times q8_0's bound.

What it cannot see: a converter whose transform is itself wrong for llama.cpp, since the expected tensors
come from that same transform. The logit comparison covers that (tight at float32 / float16, where the
converter's defect tests run), this check covers everything after it: the writer, the quantisation, the
types, names and shapes stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.export.gguf_arch import converted_tensors
from dsft.export.gguf_layout import GGUFLayoutError, read_tensors
from dsft.export.verify import VerificationError

# Elements compared at a time: a tensor is dequantised in slices along its first axis, so the check holds the
# converter's tensor (which the writer held too) plus one slice, never the file.
CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RoundingBound:
    """The largest error rounding to one ggml type can leave in a tensor: ``relative`` of its L2 norm plus
    ``absolute`` per element (root-sum-square), for values below the type's normal range."""

    relative: float
    absolute: float = 0.0

    def limit(self, norm: float, elements: int) -> float:
        # 1e-9: the float64 norms' own rounding, so a tensor at the exact worst case is not refused.
        return (self.relative * norm + self.absolute * math.sqrt(elements)) * (1 + 1e-9)


# Q8_0 stores each block of 32 values as int8 q_i = round(x_i / d) with d = max|x| / 127, d rounded to float16.
# Per value |x_i - q_i d| <= d / 2 and |q_i (d - d16)| <= (|x_i| + d / 2) * 2^-11 + 127 * 2^-25 (d's float16
# rounding, relative in the normal range, 2^-25 absolute below it). With d <= ||x_block||_2 / 127 a block's error
# is at most sqrt(32) / 254 * (1 + 2^-11) + 2^-11 = 2.277% of its norm (reached by a block of one non-zero value),
# and so is the whole tensor's (Minkowski over blocks). Rounded up to 2.28%.
Q8_0_RELATIVE = 0.0228
# Round to nearest: float16 half a unit of its 11 significant bits (2^-25 absolute for subnormals), bfloat16 of
# its 8; float32 is the converter's own value. Keyed by GGMLQuantizationType name; the writer writes no other.
ROUNDING_BOUNDS = {
    "F32": RoundingBound(0.0),
    "F16": RoundingBound(2**-11, 2**-25),
    "BF16": RoundingBound(2**-8),
    "Q8_0": RoundingBound(Q8_0_RELATIVE, 127 * 2**-25),
}


@dataclass(frozen=True)
class TensorDeviation:
    """How far one stored tensor is from the converter's: ``error`` / ``norm`` is its relative RMS error."""

    name: str
    source: str
    ggml_type: str
    error: float  # ||stored - converted||_2
    norm: float  # ||converted||_2
    limit: float  # the largest error its type's rounding can leave

    @property
    def relative(self) -> float:
        return self.error / self.norm if self.norm else (0.0 if self.error == 0 else math.inf)

    def accepted(self) -> bool:
        return self.error <= self.limit  # NaN fails

    def describe(self) -> str:
        what = f"{self.name} ({self.ggml_type}, from {self.source})"
        if not self.norm:
            return f"{what} holds values (L2 norm {self.error:.3g}) where the converted tensor is all zeros"
        allowed = (f"{self.ggml_type} rounding leaves at most {self.limit / self.norm:.3%}" if self.limit
                   else f"{self.ggml_type} stores the converted values exactly")
        return (f"{what} differs from the converted tensor by {self.relative:.3%} of its norm (relative RMS "
                f"error), where {allowed}")


def _deviation(name: str, source: str, stored: Any, converted: Any) -> TensorDeviation:
    """Compare a file tensor (:class:`dsft.export.gguf_layout.StoredTensor`) with the converter's array, slice by slice along the first axis."""
    import numpy as np
    from gguf.quants import dequantize

    ggml_type = stored.tensor_type.name
    bound = ROUNDING_BOUNDS[ggml_type]
    rows = converted.shape[0] if converted.ndim > 1 else 1
    step = max(1, CHUNK_ELEMENTS // max(1, converted.size // max(rows, 1)))
    error_sq = norm_sq = 0.0
    for start in range(0, rows, step):
        part = slice(start, start + step) if converted.ndim > 1 else slice(None)
        expected = converted[part].astype(np.float64)
        difference = dequantize(stored.data[part], stored.tensor_type).astype(np.float64) - expected
        error_sq += float(np.square(difference).sum())  # NaN or inf stays, and is refused
        norm_sq += float(np.square(expected).sum())
    norm = math.sqrt(norm_sq)
    return TensorDeviation(name, source, ggml_type, math.sqrt(error_sq), norm, bound.limit(norm, converted.size))


def tensor_deviations(path: Path, model: Any, arch: str) -> Iterator[TensorDeviation | str]:
    """Each converted tensor's :class:`TensorDeviation` from the file, or a line saying why it cannot be compared
    (missing, another shape, a type without a bound, a tensor the converter does not write).

    The file's header is read by :func:`dsft.export.gguf_layout.read_tensors` (its tensors, as GGUFReader reads
    them, without building the tokenizer's metadata values); a header it cannot read is a
    :class:`VerificationError` naming what is wrong.
    """
    try:
        stored = {tensor.name: tensor for tensor in read_tensors(path)}  # memory-mapped, not read
    except GGUFLayoutError as error:
        raise VerificationError(f"verification failed for gguf export {path}: its header cannot be read: {error} "
                                "(a write defect; --no-verify skips this check)") from None
    for name, source, converted in converted_tensors(model, arch):
        tensor = stored.pop(name, None)
        if tensor is None:
            yield f"{name} (from {source}) is missing from the file"
            continue
        if tensor.shape != tuple(converted.shape):
            yield (f"{name} (from {source}) has shape {list(tensor.shape)} in the file, the converter's "
                   f"{list(converted.shape)}")
        elif tensor.tensor_type.name not in ROUNDING_BOUNDS:
            yield f"{name} (from {source}) is stored as {tensor.tensor_type.name}, which the writer never writes"
        else:
            yield _deviation(name, source, tensor, converted)
    for name in stored:
        yield f"{name} is in the file but the converter writes no such tensor"


def check_gguf_tensors(path: Path, model: Any, arch: str,
                       echo: Callable[[str], None] = print) -> dict[str, float]:
    """Refuse (:class:`VerificationError`, naming the tensors) a file whose tensors are not the converter's
    tensors of ``model`` within their types' rounding; return the largest relative RMS error per ggml type.

    Every tensor is compared before the refusal, which names the first one found and how many more there are.
    """
    worst: dict[str, float] = {}
    problems: list[str] = []
    total = 0
    for found in tensor_deviations(path, model, arch):
        total += 1
        if isinstance(found, str):
            problems.append(found)
            continue
        if not found.accepted():
            problems.append(found.describe())
        else:
            worst[found.ggml_type] = max(worst.get(found.ggml_type, 0.0), found.relative)
    figures = ", ".join(f"{ggml_type} {value * 100:.2g}%" for ggml_type, value in sorted(worst.items()))
    echo(f"verify gguf tensors: {total - len(problems)}/{total} tensors as converted within their type's "
         f"rounding (largest relative RMS error of those: {figures})")
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])}{'; ...' if len(problems) > 4 else ''})"
        raise VerificationError(
            f"verification failed for gguf export {path}: tensor {problems[0]}{more if len(problems) > 1 else ''}: "
            "the file does not hold the tensors the converter made of the trained model (a layout or write "
            "defect; --tolerance does not apply to this check, --no-verify skips it)")
    return worst
