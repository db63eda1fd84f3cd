"""What the server runs: the model (with its named LoRA adapters), tokenizer, chat template and limits.

``MODEL_OR_RUN`` is resolved by :func:`dsft.export.source.resolve_source` (the same rules as export: a
run directory's ``run.json`` names the template and base model; a LoRA run serves base + its adapter).
Adapters are loaded once, by name, at start; requests pick one by name and never by path.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsft.errors import DsftError
from dsft.export.quantize import quantize_dynamic_int8
from dsft.export.source import resolve_source
from dsft.models.loading import align_special_tokens, load_model, load_tokenizer
from dsft.models.lora import load_lora_adapter
from dsft.serve.load_options import check_load_options
from dsft.serve.sampling import SamplingParams

if TYPE_CHECKING:
    from dsft.export.source import ExportSource

RUN_ADAPTER_NAME = "run"
# The sampling keys of a checkpoint's generation_config.json that a silent request takes, as vLLM takes them.
RECOMMENDED_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


@dataclass
class ServingModel:
    """A loaded model ready to generate.

    ``default_adapter`` is what the served model name means (a LoRA run's own adapter, else None = the
    base weights); ``adapters`` maps every loadable name to its directory.
    """

    model: Any
    tokenizer: Any
    template_name: str
    eos_ids: set[int]
    max_model_len: int
    default_adapter: str | None = None
    adapters: dict[str, Path] = field(default_factory=dict)
    generation_defaults: dict[str, float] = field(default_factory=dict)

    def sampling(
        self, max_tokens: int, temperature: float | None = None, top_p: float | None = None,
        stop: list[str] | None = None, seed: int | None = None, **shaping: float,
    ) -> SamplingParams:
        """Sampling settings of a request, the checkpoint's recommended values filling what it left unset.

        ``shaping`` passes the request's other :class:`SamplingParams` fields (``top_k``, ``min_p``, ...) as given.
        """
        defaults = self.generation_defaults
        recommended = {key: value for key, value in defaults.items() if key not in ("temperature", "top_p")}
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature if temperature is not None else defaults.get("temperature", 1.0),
            top_p=top_p if top_p is not None else defaults.get("top_p", 1.0),
            stop=list(stop or []), seed=seed, **{**recommended, **shaping},  # type: ignore[arg-type]
        )

    @contextlib.contextmanager
    def adapter_active(self, name: str | None) -> Iterator[None]:
        """Run the body with adapter ``name`` active (None: the base weights, adapters disabled)."""
        if not self.adapters:
            yield
            return
        if name is None:
            with self.model.disable_adapter():
                yield
            return
        self.model.set_adapter(name)
        yield


def adapter_rank(adapter_dir: Path) -> int:
    """The largest LoRA rank in an adapter (``r`` and any per-module ``rank_pattern`` value)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    ranks = [int(config.get("r", 8))] + [int(v) for v in (config.get("rank_pattern") or {}).values()]
    return max(ranks)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a turn: the tokenizer's EOS plus generation_config's (which may be a list)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if not ids:
        raise DsftError("the tokenizer and generation_config name no EOS token; generation could never stop")
    return ids


def _generation_defaults(model: Any) -> dict[str, float]:
    """The checkpoint's recommended sampling (R1: temperature 0.6, top_p 0.95; Qwen2.5 also top_k 20 and
    repetition_penalty 1.05), used where a request is silent: the keys vLLM reads from generation_config.json."""
    config = getattr(model, "generation_config", None)
    if config is None or not getattr(config, "do_sample", False):
        return {}
    return {key: (int if key == "top_k" else float)(getattr(config, key)) for key in RECOMMENDED_SAMPLING
            if getattr(config, key, None)}


def _attach_adapters(model: Any, adapters: dict[str, Path]) -> Any:
    """Wrap ``model`` in one PeftModel holding every adapter under its name."""
    # load_lora_adapter, not PeftModel.from_pretrained: peft would rewrite DeepSeek-V3 MLP targets.
    for name, path in adapters.items():
        model = load_lora_adapter(model, str(path), adapter_name=name)
    return model.eval()


def load_serving_model(
    model_or_run: "str | ExportSource", extra_adapters: dict[str, Path] | None = None, quantize: str | None = None,
    device: str | None = None, dtype: str = "auto", max_model_len: int | None = None,
) -> ServingModel:
    """Load ``MODEL_OR_RUN`` (or its already resolved source) plus named adapters; ``quantize="int8"`` for CPU."""
    source = resolve_source(model_or_run) if isinstance(model_or_run, str) else model_or_run
    adapters: dict[str, Path] = {}
    if source.adapter_dir is not None:
        adapters[RUN_ADAPTER_NAME] = source.adapter_dir
    for name, path in (extra_adapters or {}).items():
        if name in adapters:
            raise DsftError(f"--adapter {name}: the name is taken by the run's own adapter; choose another")
        adapters[name] = path
    check_load_options(quantize, dtype)
    model = load_model(source.model_dir, dtype="float32" if quantize else dtype, device="cpu" if quantize else device)
    tokenizer = load_tokenizer(source.tokenizer_dir)
    align_special_tokens(model, tokenizer)
    if adapters:
        model = _attach_adapters(model, adapters)
    if quantize == "int8":
        model, adapters = _quantize_int8(model, adapters)
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if max_model_len is not None:
        limit = min(limit, max_model_len) if limit else max_model_len
    if limit <= 0:
        raise DsftError(f"{source.model_dir}: config.json has no max_position_embeddings; pass --max-model-len")
    return ServingModel(
        model=model, tokenizer=tokenizer, template_name=source.template, eos_ids=_eos_ids(model, tokenizer),
        max_model_len=limit, default_adapter=RUN_ADAPTER_NAME if RUN_ADAPTER_NAME in adapters else None,
        adapters=adapters, generation_defaults=_generation_defaults(model),
    )


def _quantize_int8(model: Any, adapters: dict[str, Path]) -> tuple[Any, dict[str, Path]]:
    """Dynamic int8 needs plain Linear layers: merge a single adapter first; several cannot share int8 weights."""
    if len(adapters) > 1:
        raise DsftError("--quantize int8 with several adapters: int8 weights cannot switch adapters; merge one "
                        "adapter with `dsft export --format hf` and serve that, or drop --quantize")
    if adapters:
        model = model.merge_and_unload()
    return quantize_dynamic_int8(model), {}
