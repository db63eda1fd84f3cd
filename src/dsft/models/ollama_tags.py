"""What an Ollama model name looks like (the one owner of that rule), and an Ollama tag (``deepseek-r1:32b``)
given where dsft takes a model, with what to write instead.

dsft reads an Ollama model only as ``ollama:NAME[:TAG]`` (its GGUF, converted once from the local store, see
:mod:`dsft.models.gguf_source`); the bare tag matches none of the names a model can be given by, and the
generic "not a local directory, ..." said nothing about why. The original (unquantised) weights are on the
Hugging Face hub under another name, so the message also names the hub id where it is known.
"""

from __future__ import annotations

import re

from dsft.models.presets import REAL_MODEL_FACTS

OLLAMA_PREFIX = "ollama:"  # how model.name_or_path names a model of the local Ollama store

# An Ollama model name as Ollama itself parses and checks it (types/model/name.go: ParseName, then Name.IsValid,
# the one check behind `ollama create NAME`, `ollama run NAME` and `ollama pull NAME`):
# [[HOST/]NAMESPACE/]MODEL[:TAG], ASCII only; every part starts with a letter, a digit or '_' and goes on in
# letters, digits, '_' and '-', with '.' too except in the namespace and ':' too in the host (a port); the host at
# most 350 characters, the others 80. No part can be '.' or '..', so a name is a safe path in the store. The same
# rule serves the names dsft reads (``ollama:NAME``, found in the local store; ``ollama run`` also takes
# ``NAME@DIGEST`` and cloud models, which have no GGUF there) and the names it writes (``dsft export --name``, the
# dashboard's export name: `ollama create` refuses no name Ollama reads). OLLAMA_NAME: the tag may be left out
# (``latest``); OLLAMA_TAG: the bare tag a user copies from `ollama run`, with its ':TAG'.
OLLAMA_PART_MAX = 80  # characters of a namespace, a model or a tag
_HOST = r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}"
_NAMESPACE = rf"[A-Za-z0-9_][A-Za-z0-9_-]{{0,{OLLAMA_PART_MAX - 1}}}"
_PART = rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{OLLAMA_PART_MAX - 1}}}"  # a model or a tag
_NAME = rf"(?:(?:{_HOST}/)?{_NAMESPACE}/)?{_PART}"
OLLAMA_NAME = re.compile(rf"{_NAME}(?::{_PART})?")
OLLAMA_TAG = re.compile(rf"{_NAME}:{_PART}")
OLLAMA_NAME_RULE = ("[[host/]namespace/]model[:tag], each part letters, digits, '_', '-' and '.' ('.' not in the "
                    "namespace), starting with a letter, digit or '_', at most 80 of them")

# Ollama library tags -> the real-model preset holding their original weights' hub id. deepseek-r1:8b is left
# out: Ollama re-pointed it from the Llama-8B distill to the R1-0528 Qwen3-8B distill, which has no preset.
OLLAMA_LIBRARY_MODELS = {
    "deepseek-r1:1.5b": "r1-distill-qwen-1.5b", "deepseek-r1:7b": "r1-distill-qwen-7b",
    "deepseek-r1:14b": "r1-distill-qwen-14b", "deepseek-r1:32b": "r1-distill-qwen-32b",
    "deepseek-r1:70b": "r1-distill-llama-70b", "deepseek-v3:671b": "deepseek-v3",
    "deepseek-llm:7b": "deepseek-llm-7b", "deepseek-llm:67b": "deepseek-llm-67b",
    "deepseek-v2:16b": "deepseek-v2-lite", "deepseek-v2:236b": "deepseek-v2",
}
_EXAMPLE_HUB_ID = REAL_MODEL_FACTS["r1-distill-qwen-32b"].hub_id


def is_ollama_name(name: str) -> bool:
    """Whether Ollama takes ``name`` as a model name: what ``ollama:NAME[:TAG]`` takes after its prefix (the shape
    only, not the store) and what ``ollama create`` takes.

    >>> [is_ollama_name(n) for n in ("deepseek-r1", "ns/model:q4", "localhost:5000/ns/m:t", "_x:y", "a..b")]
    [True, True, True, True, True]
    >>> [is_ollama_name(n) for n in ("a/b/c/d", "x:", "modèle:7b", "my.team/m", "../x", "x" * 81)]
    [False, False, False, False, False, False]
    """
    return bool(OLLAMA_NAME.fullmatch(name))


def ollama_name_problem(name: str, flag: str = "--name") -> str | None:
    """Why ``ollama create`` would refuse ``name`` (None: it takes it), said of ``flag`` (the dashboard's field).

    >>> ollama_name_problem("medical-qa:v1") is None, ollama_name_problem("医疗模型") is not None
    (True, True)
    """
    if is_ollama_name(name):
        return None
    return f"{flag} {name}: not an Ollama model name; use {OLLAMA_NAME_RULE} (e.g. medical-qa:v1)"


def is_ollama_tag(name: str) -> bool:
    """Whether ``name`` has an Ollama tag's shape without the ``ollama:`` dsft reads one by.

    >>> [is_ollama_tag(n) for n in ("deepseek-r1:32b", "ns/model:q4", "ollama:deepseek-r1:32b", "a/b", "/x:y")]
    [True, True, False, False, False]
    """
    return not name.startswith(OLLAMA_PREFIX) and bool(OLLAMA_TAG.fullmatch(name))


def original_weights(tag: str) -> str:
    """Where the tag's original weights are, as the message says it: the hub id when the tag is a known Ollama
    library model, else a preset of the tag's size when exactly one has it (an example), else how to find one.

    >>> original_weights("deepseek-r1:32b")
    'the hub id deepseek-ai/DeepSeek-R1-Distill-Qwen-32B'
    >>> original_weights("deepseek:70b")
    'a hub id (org/name), e.g. deepseek-ai/DeepSeek-R1-Distill-Llama-70B'
    """
    known = OLLAMA_LIBRARY_MODELS.get(tag.lower())
    if known is not None:
        return f"the hub id {REAL_MODEL_FACTS[known].hub_id}"
    size = tag.rpartition(":")[2].lower()
    same_size = [facts.hub_id for preset, facts in REAL_MODEL_FACTS.items() if preset.endswith(f"-{size}")]
    example = same_size[0] if len(same_size) == 1 else _EXAMPLE_HUB_ID
    return f"a hub id (org/name), e.g. {example}"


def ollama_tag_problem(name: str, not_read_by: str | None = None) -> str | None:
    """What to say about ``name`` when it is an Ollama tag (None otherwise), for callers that prefix where it was
    given. ``not_read_by``: the reader that takes no Ollama model at all (the planner), which refuses
    ``ollama:NAME[:TAG]`` as well.

    >>> ollama_tag_problem("ollama:deepseek-r1:7b", not_read_by="the planner")
    'an Ollama model, which the planner does not read; name the Hugging Face weights: the hub id deepseek-ai/DeepSeek-R1-Distill-Qwen-7B'
    """
    tag = name.removeprefix(OLLAMA_PREFIX) if not_read_by else name
    if not is_ollama_tag(tag):
        return None
    weights = original_weights(tag)
    if not_read_by:
        return f"an Ollama model, which {not_read_by} does not read; name the Hugging Face weights: {weights}"
    return (f"an Ollama tag; dsft reads Ollama models written {OLLAMA_PREFIX}{name} (converted once from the local "
            f"Ollama store's GGUF, with its quantisation), or name the Hugging Face weights: {weights}")
