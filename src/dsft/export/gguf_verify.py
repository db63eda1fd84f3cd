"""Load an exported GGUF with llama-cpp-python and compare it with the transformers model.

llama-cpp-python is the reference consumer of GGUF files (Ollama and LM Studio run the same
llama.cpp). Two checks: the tokenizer (llama.cpp re-implements pre-tokenization in C++, so the
``tokenizer.ggml.pre`` choice can silently change ids) and the logits at every prompt position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dsft.errors import DsftError, UnsupportedError
from dsft.export.bounds import LogitBound, LogitComparison
from dsft.export.verify import (
    RAW_TEXTS, VerificationError, check_tolerance, compare_logits, verification_conversations,
)
from dsft.templates import get_template

# Strings whose tokenization must match: ASCII, digits (split in 1-3 digit groups by some regexes),
# Chinese and Japanese (their own split in DeepSeek V3's regex), newlines and spaces, special tokens.
TOKENIZATION_PROBES = RAW_TEXTS + (
    "  leading spaces,\ttabs\nand\n\nnewlines   ",
    "日本語のテキストと漢字、カタカナ。",
    "x=3.14159; y = x**2 // 7 != 0x1F",
)


def require_llama_cpp() -> None:
    """Refuse GGUF verification up front (before any file is written) when llama-cpp-python cannot load."""
    try:
        import llama_cpp  # noqa: F401 - optional heavy dependency, imported only to check it works
    except (ImportError, OSError) as exc:
        raise UnsupportedError(
            f"GGUF verification needs llama-cpp-python, which failed to import ({exc}); it is a dsft dependency "
            "built from source (`pip install llama-cpp-python`, about 4 minutes with a C++ compiler), "
            "or pass --no-verify") from exc


def llama_threads() -> int:
    """The CPU threads llama.cpp computes on, for single tokens and prompt batches alike: torch's intra-op thread
    count, the one setting every CPU computation of dsft follows (``OMP_NUM_THREADS``, else torch's default of one per
    physical core; ``torch.set_num_threads`` in a program), so the GGUF and the transformers model it is compared
    with run alike. It was fixed at 2 threads (and llama-cpp-python's default of every logical CPU for batches)."""
    import torch  # heavy: the verification has loaded it already, for the transformers side

    return max(1, torch.get_num_threads())


def load_llama(path: Path, n_ctx: int = 512, vocab_only: bool = False) -> Any:
    """Open a GGUF file with llama-cpp-python on CPU with logits for every position, on :func:`llama_threads` threads.

    The KV cache is float32 (llama.cpp defaults to float16, which alone moves logits by ~1e-3): the
    check is about the file's weights, not the cache precision a server may choose.
    """
    require_llama_cpp()
    from llama_cpp import Llama
    import llama_cpp.llama_cpp as low_level

    # llama.cpp's extra CPU buffer types (AMX / repacked kernels) crashed (SIGSEGV) on Q8_0 tensors with
    # 64-wide rows in llama-cpp-python 0.3.36; verification checks numbers, not speed, so it loads with
    # plain CPU buffers. llama-cpp-python exposes no argument for this, hence the scoped override.
    default_params = low_level.llama_model_default_params

    def plain_cpu_params() -> Any:
        params = default_params()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    threads = llama_threads()
    low_level.llama_model_default_params = plain_cpu_params
    try:
        f32 = getattr(low_level, "GGML_TYPE_F32", 0)
        return Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, n_gpu_layers=0, n_threads=threads,
                     n_threads_batch=threads, type_k=f32, type_v=f32, vocab_only=vocab_only, verbose=False, seed=0)
    except (ValueError, RuntimeError) as exc:
        raise DsftError(f"{path}: llama.cpp (llama-cpp-python) could not load the file: {exc}") from exc
    finally:
        low_level.llama_model_default_params = default_params


def gguf_logits(llm: Any, prompts: Sequence[Sequence[int]]) -> list[Any]:
    """llama.cpp logits ``[positions, vocab]`` for each prompt, evaluated from an empty context."""
    import numpy as np

    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(list(ids))
        out.append(np.array(llm.scores[: len(ids)], dtype=np.float32))
    return out


def tokenization_mismatches(llm: Any, tokenizer: Any, texts: Sequence[str]) -> list[str]:
    """Texts that llama.cpp tokenizes differently from transformers (special tokens parsed in both)."""
    problems = []
    for text in texts:
        expected = tokenizer.encode(text, add_special_tokens=False)
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if list(got) != list(expected):
            problems.append(f"{text[:40]!r}: transformers {expected[:12]}..., llama.cpp {list(got)[:12]}...")
    return problems


def probe_texts(template_name: str, tokenizer: Any) -> list[str]:
    """Tokenization probes plus the run template's rendered prompts (which carry its special tokens)."""
    template = get_template(template_name, tokenizer)
    return list(TOKENIZATION_PROBES) + [template.render_prompt(conv) for conv in verification_conversations()]


def verify_gguf(path: Path, tokenizer: Any, template_name: str, prompts: Sequence[Sequence[int]],
                reference: Sequence[Any], tolerance: float | LogitBound,
                echo: Callable[[str], None] = print) -> tuple[LogitComparison, list[str]]:
    """Tokenizer parity and logit parity of a GGUF file; :class:`DsftError` if either fails."""
    llm = load_llama(path, n_ctx=max(64, max(len(p) for p in prompts) + 8))
    try:
        mismatches = tokenization_mismatches(llm, tokenizer, probe_texts(template_name, tokenizer))
        comparison = compare_logits(reference, gguf_logits(llm, prompts))
    finally:
        llm.close()
    total = len(TOKENIZATION_PROBES) + len(verification_conversations())
    echo(f"verify gguf tokenizer: {total - len(mismatches)}/{total} probe texts tokenized identically")
    if mismatches:
        raise VerificationError(f"{path}: llama.cpp tokenizes differently from the transformers tokenizer",
                        problems=mismatches)
    check_tolerance(comparison, tolerance, f"gguf export {path}", echo)
    return comparison, mismatches
