"""LoRA targets discovered from the model itself, not from a table keyed by model name.

``all-linear`` walks the modules and keeps every ``nn.Linear`` inside the decoder (attention projections,
including MLA's ``q_a_proj``/``q_b_proj``/``kv_a_proj_with_mqa``/``kv_b_proj``; dense MLPs; shared
experts), and every stacked expert weight (a 3-D ``nn.Parameter`` such as transformers 5's fused
``mlp.experts.gate_up_proj`` [E, 2I, H] and ``mlp.experts.down_proj`` [E, H, I]), which peft reaches
through ``LoraConfig(target_parameters=...)``. Never targeted: the MoE router (``mlp.gate``; its bias
correction buffer must stay untouched by LoRA), ``lm_head`` and embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dsft.config.spelling import meant_key
from dsft.errors import DsftError, UnsupportedError

if TYPE_CHECKING:
    from torch import nn

    from dsft.config.schema import LoraConfig

# Leaf names of router / gating modules across MoE families (DeepSeek, Qwen2-MoE, Mixtral, Llama 4).
ROUTER_LEAF_NAMES = frozenset({"gate", "router", "shared_expert_gate"})
_LAYER_INDEX = re.compile(r"^(?:.*\.)?\d+\.")


@dataclass(frozen=True)
class LoraTargets:
    """peft targets: ``modules`` for ``target_modules`` (leaf names), ``parameters`` for ``target_parameters``."""

    modules: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)


def _is_router(name: str, module: "nn.Module") -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ROUTER_LEAF_NAMES or "router" in type(module).__name__.lower()


def _excluded_module_names(model: "nn.Module") -> set[str]:
    """Full names of modules that must never carry LoRA: output and input embeddings, routers."""
    excluded = set()
    by_id = {id(module): name for name, module in model.named_modules()}
    for getter in ("get_output_embeddings", "get_input_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None and id(module) in by_id:
            excluded.add(by_id[id(module)])
    for name, module in model.named_modules():
        if _is_router(name, module):
            excluded.add(name)
    return excluded


def full_shape(param: "nn.Parameter") -> tuple[int, ...]:
    """A parameter's shape, also where DeepSpeed ZeRO-3 has partitioned it (its ``shape`` is then ``(0,)``, the
    real one in ``ds_shape``): a model built partitioned (:mod:`dsft.training.partitioned_loading`) is wrapped so."""
    return tuple(getattr(param, "ds_shape", param.shape))


def _under(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def linear_module_names(model: "nn.Module") -> dict[str, str]:
    """Every eligible ``nn.Linear`` (bitsandbytes' quantized linears subclass it): full name -> leaf name."""
    from torch import nn

    excluded = _excluded_module_names(model)
    return {
        name: name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not _under(name, excluded)
    }


def expert_parameter_names(model: "nn.Module") -> list[str]:
    """Stacked expert weights (3-D parameters held directly by a non-Linear module), as layer-relative suffixes.

    ``model.layers.1.mlp.experts.gate_up_proj`` -> ``mlp.experts.gate_up_proj`` (peft matches by suffix).
    """
    from torch import nn

    excluded = _excluded_module_names(model)
    suffixes: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)) or _under(name, excluded):
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if len(full_shape(param)) == 3:
                suffixes.add(_LAYER_INDEX.sub("", f"{name}.{param_name}"))
    return sorted(suffixes)


def discover_lora_targets(model: "nn.Module", targets: str | list[str] = "all-linear",
                          include_experts: bool = True) -> LoraTargets:
    """Find LoRA targets in ``model``.

    ``targets="all-linear"``: every eligible Linear (by leaf name) plus, with ``include_experts``, the
    fused expert parameters. A list is taken literally: each entry names Linear modules (leaf or full
    name) or an expert parameter suffix (e.g. ``mlp.experts.down_proj``); unknown or forbidden entries
    (router, lm_head, embeddings) raise :class:`DsftError` listing what exists.
    """
    linears = linear_module_names(model)
    experts = expert_parameter_names(model)
    if targets == "all-linear":
        modules = sorted(set(linears.values()))
        # A leaf name shared with an excluded Linear (e.g. a router called "gate_proj" somewhere) would
        # make peft wrap that one too: fall back to full names for such leaves.
        from torch import nn

        forbidden = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                     if isinstance(m, nn.Linear) and n not in linears}
        clashing = set(modules) & forbidden
        modules = sorted(set(modules) - clashing) + sorted(n for n, leaf in linears.items() if leaf in clashing)
        return LoraTargets(modules=modules, parameters=experts if include_experts else [])
    if isinstance(targets, str):
        targets = [targets]
    modules, parameters, problems = [], [], []
    leaves = set(linears.values())
    for entry in targets:
        if entry in leaves or entry in linears:
            modules.append(entry)
        elif any(entry == p or p.endswith("." + entry) or entry.endswith("." + p) or entry == p.rsplit(".", 1)[-1]
                 for p in experts):
            parameters.append(entry)
        else:
            # A slip of one name, as for a config key; any other name gets the list below, not a module that
            # shares letters with it (difflib sent V3's 'vproj' to o_proj or kv_b_proj).
            close = meant_key(entry, sorted(leaves) + experts)
            problems.append(f"lora.targets: {entry!r} matches no adaptable Linear or expert parameter "
                            "(routers, lm_head and embeddings are never targets)"
                            + (f"; did you mean {close!r}?" if close else ""))
    if problems:
        raise DsftError(f"lora.targets: {len(problems)} name(s) match no module of {type(model).__name__}",
                        problems + [f"adaptable modules: {', '.join(sorted(leaves))}",
                                    f"expert parameters: {', '.join(experts) or 'none'}"])
    return LoraTargets(modules=modules, parameters=parameters)


def _named_by(name: str, entries: list[str]) -> bool:
    """Whether ``name`` is what one of ``entries`` names, as peft matches ``target_modules`` and
    ``target_parameters``: the whole name, or its ending after a dot."""
    return any(name == entry or name.endswith("." + entry) for entry in entries)


def adapted_weight_shapes(model: "nn.Module", targets: str | list[str] = "all-linear",
                          include_experts: bool = True) -> list[tuple[int, int, int]]:
    """``(in features, out features, matrices)`` of every weight LoRA adapts in ``model`` for ``targets`` (the
    ``lora.targets`` / ``lora.target_experts`` settings, resolved by :func:`discover_lora_targets` as training
    resolves them), one entry per distinct shape. A stacked expert weight ``[E, out, in]`` counts E matrices.

    A rank-r adapter adds ``r * (in + out)`` parameters per matrix; the planner sizes adapters from this (on a
    meta-device model: nothing is allocated, and nothing is wrapped).
    """
    from torch import nn

    found = discover_lora_targets(model, targets, include_experts=include_experts)
    counts: dict[tuple[int, int], int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if _named_by(name, found.modules):
                key = (module.in_features, module.out_features)
                counts[key] = counts.get(key, 0) + 1
            continue
        for param_name, param in module.named_parameters(recurse=False):
            shape = full_shape(param)
            if len(shape) == 3 and _named_by(f"{name}.{param_name}", found.parameters):
                experts, fan_out, fan_in = shape
                counts[(fan_in, fan_out)] = counts.get((fan_in, fan_out), 0) + experts
    return [(fan_in, fan_out, matrices) for (fan_in, fan_out), matrices in counts.items()]


def lora_targets_of(lora_cfg: "LoraConfig", model: "nn.Module") -> LoraTargets:
    """The targets the ``lora`` config section adapts in ``model`` (a loaded model or its weightless skeleton), or
    the refusal of settings it will not take: a name matching no module, expert targets with dropout or DoRA."""
    found = discover_lora_targets(model, lora_cfg.targets, include_experts=lora_cfg.target_experts)
    if found.parameters and (lora_cfg.dropout > 0 or lora_cfg.use_dora):
        raise UnsupportedError(
            "LoRA on fused expert parameters (peft target_parameters) works only with lora.dropout: 0 and "
            "lora.use_dora: false; set those, or lora.target_experts: false to adapt attention and shared "
            "experts only"
        )
    return found


def targets_could_be_refused(lora_cfg: "LoraConfig") -> bool:
    """Whether :func:`lora_targets_of` could refuse the section on some model: named targets (a name may match no
    module), or expert targets with dropout or DoRA. ``all-linear`` alone adapts what every model has, so no
    model needs building to check it.

    >>> from dsft.config.schema import LoraConfig
    >>> targets_could_be_refused(LoraConfig()), targets_could_be_refused(LoraConfig(targets=["q_proj"]))
    (False, True)
    >>> targets_could_be_refused(LoraConfig(dropout=0.1))
    True
    >>> targets_could_be_refused(LoraConfig(dropout=0.1, target_experts=False))
    False
    """
    experts_refused = lora_cfg.target_experts and (lora_cfg.dropout > 0 or lora_cfg.use_dora)
    return lora_cfg.targets != "all-linear" or experts_refused


def build_lora_config(lora_cfg: "LoraConfig", model: "nn.Module") -> Any:
    """A ``peft.LoraConfig`` for ``model`` from the ``lora`` config section (targets: :func:`lora_targets_of`)."""
    from peft import LoraConfig as PeftLoraConfig

    found = lora_targets_of(lora_cfg, model)
    return PeftLoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=found.modules,
        target_parameters=found.parameters or None,
        use_rslora=lora_cfg.use_rslora,
        use_dora=lora_cfg.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


@contextmanager
def native_v5_targets() -> Iterator[None]:
    """Stop peft from rewriting LoRA targets as if they were written for transformers v4 MoE layouts.

    peft (0.18-0.21) maps ``gate_proj``/``up_proj``/``down_proj`` targets of DeepSeek-V3 / Qwen2-MoE models
    to the fused expert parameters and drops them from ``target_modules``, so the dense MLP layers and
    the shared experts silently get no adapter (peft issue 3711). dsft's targets are discovered on the
    loaded v5 model, so no conversion is needed: wrap ``get_peft_model`` / ``PeftModel.from_pretrained``
    in this context.
    """
    try:
        from peft.utils import transformers_weight_conversion as conversion
    except ImportError:  # peft without the v4 -> v5 conversion: nothing to disable
        yield
        return
    original = conversion.convert_peft_config_for_transformers
    conversion.convert_peft_config_for_transformers = lambda *args, **kwargs: None
    try:
        yield
    finally:
        conversion.convert_peft_config_for_transformers = original


def apply_lora(model: "nn.Module", lora_cfg: "LoraConfig") -> Any:
    """Wrap ``model`` in a peft model with the discovered targets (dense MLPs and shared experts included)."""
    from peft import get_peft_model

    config = build_lora_config(lora_cfg, model)
    with native_v5_targets():
        return get_peft_model(model, config)


def load_lora_adapter(model: "nn.Module", adapter_dir: str, is_trainable: bool = False,
                      adapter_name: str = "default") -> Any:
    """Load a saved adapter onto ``model`` exactly as it was trained (no v4 -> v5 target rewriting).

    ``model`` may already be a ``PeftModel``: the adapter is then added under ``adapter_name``.
    """
    from peft import PeftModel

    with native_v5_targets():
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
            return model
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name,
                                         is_trainable=is_trainable)
