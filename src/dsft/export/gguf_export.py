"""GGUF export for llama.cpp and Ollama, written with the ``gguf`` package, verified by reading every tensor back
(:mod:`dsft.export.gguf_readback`) and with llama-cpp-python.

The converter works from the loaded (merged) transformers model rather than the checkpoint files, so
whatever layout transformers uses on disk (fused experts, renamed keys) the tensors are the ones that
produced the reference logits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import UnsupportedError
from dsft.export.gguf_arch import gguf_architecture, iter_gguf_tensors, write_hparams
from dsft.export.gguf_readback import check_gguf_tensors
from dsft.export.gguf_verify import require_llama_cpp, verify_gguf  # they import llama_cpp when called
from dsft.export.gguf_vocab import build_vocab, check_gguf_tokenizer, write_vocab
from dsft.export.hf import load_export_tokenizer, merge_adapter, write_export_metadata
from dsft.export.source import ExportSource, load_trained_model, routes_to_experts, stored_dtype
from dsft.export.bounds import (
    AbsoluteBound, DistributionBound, LogitBound, LogitComparison, RelativeBound, tolerating_rerouted_tokens,
)
from dsft.export.verify import hf_logits, verification_prompts
from dsft.templates import get_template

GGUF_DTYPES = ("float32", "float16", "bfloat16", "q8_0")
GGUF_FILE_NAME = "model.gguf"
# Accepted by default against the float32 trained model (llama.cpp runs with a float32 KV cache during
# verification): a max |logit difference| for float32; for float16 / bfloat16 16 units of their rounding
# (2^-11, 2^-8) of the largest logit, twice the HF exports' 8 as llama.cpp also rounds the activations to
# the weights' type (measured on SmolLM2-135M: 6 and 3.5 units, see RelativeBound), and never less than the
# former absolute bounds (0.1, 0.25). The bugs this catches, a wrong rope permutation, misplaced experts or
# router bias, a wrong tokenizer, move logits by their whole scale. q8_0 moves single logits of a real model
# by several units, so it is held to the next-token distributions instead. The measured figures are printed
# either way; --tolerance sets any other bound (dsft.export.bounds.parse_tolerance).
DEFAULT_GGUF_TOLERANCE: dict[str, LogitBound] = {
    "float32": AbsoluteBound(1e-3), "float16": RelativeBound(16 * 2**-11, floor=1e-1),
    "bfloat16": RelativeBound(16 * 2**-8, floor=2.5e-1),
    "q8_0": DistributionBound(min_top1=0.85, max_mean_kl=0.05),
}
# A model that routes tokens to experts: rounding changes which experts a few tokens get, and those positions'
# logits move by the logits' whole scale (tiny V3, trained-like, q8_0: 3 of 79 positions by 9-13 on logits of
# 18, top-1 83.5%, mean KL 0.12, which the distribution bound refuses; bfloat16: 1 position by 7.7), while
# the other positions stay within rounding noise (q8_0: at most 5% of the largest logit). So up to 10% of the
# positions may exceed the per-position limit: the half-precision bounds above, 10% of the largest reference
# logit for q8_0. Misplaced experts, a zeroed router bias or a swapped MLA split exceed it at 33-100% of the
# positions (tests/export/test_moe_verification.py).
MOE_GGUF_TOLERANCE: dict[str, LogitBound] = {
    "float32": DEFAULT_GGUF_TOLERANCE["float32"],
    "float16": tolerating_rerouted_tokens(RelativeBound(16 * 2**-11, floor=1e-1)),
    "bfloat16": tolerating_rerouted_tokens(RelativeBound(16 * 2**-8, floor=2.5e-1)),
    "q8_0": tolerating_rerouted_tokens(RelativeBound(0.10)),
}


@dataclass(frozen=True)
class GGUFExport:
    """A written GGUF file and, when verified, how llama.cpp's logits compare with the trained model."""

    path: Path
    architecture: str
    dtype: str
    comparison: LogitComparison | None
    tokenization_mismatches: list[str]


def llama_server_notes(template_name: str) -> list[str]:
    """What ``llama-server --jinja`` needs to build this family's prompts as dsft serve does (empty: nothing).

    llama-server passes ``enable_thinking`` to every chat template, true by default (``--reasoning auto``) when
    the template can think. The hybrid families' templates (flag ``thinking``) read ``enable_thinking`` as its
    alias, so without a word from the client llama-server renders them in thinking mode, where dsft serve and
    the official templates default to chat mode (measured with llama.cpp's llama-server, llama-cpp-python 0.3.36).
    """
    if get_template(template_name).thinking_flag != "thinking":
        return []
    return [f"llama-server renders {template_name} prompts in thinking mode by default (its --reasoning auto passes "
            "enable_thinking=true, which this template reads); start it with --reasoning off for the chat mode "
            "dsft serve defaults to, and select a mode per request with chat_template_kwargs "
            '{"thinking": true} or {"thinking": false}']


def source_model_type(source: ExportSource) -> str:
    """transformers ``model_type`` from the (base) checkpoint's config.json."""
    config = json.loads((source.model_dir / "config.json").read_text(encoding="utf-8"))
    return str(config.get("model_type", "unknown"))


def default_gguf_tolerance(dtype_name: str, source: ExportSource) -> LogitBound:
    """The bound a GGUF file of ``dtype_name`` is held to when ``--tolerance`` is not given."""
    return (MOE_GGUF_TOLERANCE if routes_to_experts(source.model_dir) else DEFAULT_GGUF_TOLERANCE)[dtype_name]


def gguf_dtype_name(requested: str, source: ExportSource) -> str:
    """``auto`` keeps the checkpoint's stored precision (float32 / float16 / bfloat16)."""
    name = stored_dtype(source.model_dir) if requested == "auto" else requested
    if name not in GGUF_DTYPES:
        raise UnsupportedError(f"--dtype {requested}: GGUF exports support {', '.join(GGUF_DTYPES)}")
    return name


def _tensor_type(name: str, array: Any, dtype_name: str) -> Any:
    """The ggml type of one tensor: 1-D tensors and routers stay float32, as llama.cpp's converter keeps them."""
    from gguf import GGMLQuantizationType as Q

    if array.ndim <= 1 or name.endswith("ffn_gate_inp.weight"):
        return Q.F32
    if dtype_name == "q8_0" and array.shape[-1] % 32 != 0:
        return Q.F16  # Q8_0 blocks are 32 values along a row; narrower rows fall back to f16
    return {"float32": Q.F32, "float16": Q.F16, "bfloat16": Q.BF16, "q8_0": Q.Q8_0}[dtype_name]


def _file_type(dtype_name: str) -> int:
    from gguf import LlamaFileType as F

    return int({"float32": F.ALL_F32, "float16": F.MOSTLY_F16, "bfloat16": F.MOSTLY_BF16,
                "q8_0": F.MOSTLY_Q8_0}[dtype_name])


def write_gguf(model: Any, tokenizer: Any, tokenizer_dir: Path, path: Path, dtype_name: str,
               model_name: str) -> str:
    """Write ``model`` (a transformers causal LM, adapters merged) and its tokenizer to ``path``; return the arch."""
    import gguf
    import numpy as np

    arch = gguf_architecture(model.config.model_type)
    vocab = build_vocab(tokenizer, tokenizer_dir, int(model.config.vocab_size))
    path.parent.mkdir(parents=True, exist_ok=True)
    # use_temp_file spools each converted tensor to disk, so memory holds the model plus one tensor.
    writer = gguf.GGUFWriter(str(path), arch, use_temp_file=True)
    writer.add_name(model_name)
    writer.add_file_type(_file_type(dtype_name))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_hparams(writer, arch, model.config)
    write_vocab(writer, vocab)
    for name, array in iter_gguf_tensors(model, arch):
        ttype = _tensor_type(name, array, dtype_name)
        if ttype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        elif ttype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, ttype), raw_dtype=ttype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return arch


def export_gguf(source: ExportSource, out_dir: Path, dtype: str = "auto", verify: bool = True,
                tolerance: float | LogitBound | None = None, echo: Callable[[str], None] = print) -> GGUFExport:
    """Merge, convert to ``out_dir/model.gguf`` and (by default) check it with llama-cpp-python.

    Verification reads the file back and compares each tensor with the converter's tensor of the merged model,
    within what rounding to its type can do (:mod:`dsft.export.gguf_readback`); then runs llama.cpp on the
    fixed prompts and compares every position's logits with the trained model (adapter on base, float32), and
    checks llama.cpp tokenizes the prompt texts exactly as the transformers tokenizer does.
    """
    dtype_name = gguf_dtype_name(dtype, source)
    gguf_architecture(source_model_type(source))  # refuse unsupported architectures before any work
    check_gguf_tokenizer(source.tokenizer_dir)  # and tokenizers llama.cpp cannot reproduce
    tolerance = default_gguf_tolerance(dtype_name, source) if tolerance is None else tolerance
    if verify:
        require_llama_cpp()  # refuse before converting anything: no model.gguf is left behind
    tokenizer = load_export_tokenizer(source)
    trained = load_trained_model(source)
    prompts = verification_prompts(tokenizer, source.template) if verify else []
    reference = hf_logits(trained, prompts) if verify else []
    merged = merge_adapter(trained)
    path = out_dir / GGUF_FILE_NAME
    name = (source.run_dir or source.model_dir).name
    arch = write_gguf(merged, tokenizer, source.tokenizer_dir, path, dtype_name, name)
    echo(f"wrote {path} ({arch}, {dtype_name}, {path.stat().st_size / 2**20:.1f} MiB)")
    if verify:  # the file's tensors against the converter's, before llama.cpp runs it (dsft.export.gguf_readback)
        check_gguf_tensors(path, merged, arch, echo)
    del merged, trained
    comparison, mismatches = None, []
    if verify:
        comparison, mismatches = verify_gguf(path, tokenizer, source.template, prompts, reference,
                                             tolerance, echo)
    notes = llama_server_notes(source.template)
    for note in notes:
        echo(f"note (llama.cpp): {note}")
    write_export_metadata(out_dir, source, "gguf", dtype_name, comparison, tolerance, architecture=arch,
                          gguf_file=GGUF_FILE_NAME, llama_server_notes=notes)
    return GGUFExport(path, arch, dtype_name, comparison, mismatches)
