"""The model dsft will train, without its weights: module names and shapes from the config alone.

Checks that depend on the architecture's modules (``lora.targets``) run on this skeleton before the run
directory is written, the data prepared or the weights downloaded. The skeleton is built by the class the
load builds (``AutoModelForCausalLM`` over the checkpoint's own config, remote code where
``model.trust_remote_code`` allows it) on the ``meta`` device: no memory, no weights. It is never a
look-alike: a remote-code DeepSeek-MoE is not built as Qwen2-MoE here (the planner's stand-in), since its
module names differ. Where the exact config cannot be had without the weights, or the class cannot be built
on the meta device, there is no skeleton (None) and the check runs on the loaded model instead.

Where the config comes from, for each kind of ``model.name_or_path`` (see :mod:`dsft.models.resolve`):

* a tiny preset: the config dict its writer builds the model from;
* a GGUF file or Ollama name: the converted checkpoint's ``config.json`` once converted, else the GGUF
  header (the conversion builds the model from that same config);
* a local directory: its ``config.json``;
* a hub id: its ``config.json`` once downloaded (the cache only: a machine without the hub would retry for
  half a minute); a model not downloaded yet is checked once it is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsft.models.gguf_source import gguf_file_of, imported_dir, is_gguf_source
from dsft.models.lora import lora_targets_of, targets_could_be_refused
from dsft.models.resolve import default_cache_dir, hub_cache_dir
from dsft.models.tiny import TINY_PRESETS

if TYPE_CHECKING:
    from dsft.config.schema import DsftConfig

log = logging.getLogger(__name__)


def _model_config(name: str, cache_dir: str | Path | None, revision: str | None, trust_remote_code: bool) -> Any:
    """The transformers config the load will build ``name`` from (raises what transformers raises)."""
    from transformers import AutoConfig  # heavy: only once a check needs the architecture

    if name in TINY_PRESETS:
        values = dict(TINY_PRESETS[name].config())
        return AutoConfig.for_model(values.pop("model_type"), **values)
    if is_gguf_source(name):
        path = gguf_file_of(name)
        converted = imported_dir(path, Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
        if (converted / "config.json").is_file():
            return AutoConfig.from_pretrained(str(converted))
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # as the conversion does: the checkpoint is a float one
        return config
    local = Path(name).expanduser()
    if local.is_dir():
        return AutoConfig.from_pretrained(str(local), trust_remote_code=trust_remote_code)
    return AutoConfig.from_pretrained(name, revision=revision, cache_dir=hub_cache_dir(cache_dir),
                                      trust_remote_code=trust_remote_code, local_files_only=True)


def model_config(name_or_path: str | Path, cache_dir: str | Path | None = None, revision: str | None = None,
                 trust_remote_code: bool = False) -> Any | None:
    """The transformers config the load will build ``name_or_path`` from; None where it cannot be known without
    the weights (the loaded model's config is then the one checked)."""
    name = str(name_or_path)
    try:
        return _model_config(name, cache_dir, revision, trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any failure only means "not knowable early"; the load reports it
        log.debug("%s: no config before loading (%s: %s)", name, type(exc).__name__, exc)
        return None


def model_skeleton(name_or_path: str | Path, cache_dir: str | Path | None = None, revision: str | None = None,
                   trust_remote_code: bool = False) -> Any | None:
    """The causal LM dsft will load for ``name_or_path``, built on the ``meta`` device; None where it cannot
    be known without the weights (the loaded model is then the one checked)."""
    import torch  # heavy: only once a check needs the architecture
    from transformers import AutoModelForCausalLM

    name = str(name_or_path)
    try:
        config = _model_config(name, cache_dir, revision, trust_remote_code)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any failure only means "not knowable early"; the load reports it
        log.debug("%s: no skeleton before loading (%s: %s)", name, type(exc).__name__, exc)
        return None


def check_lora_targets(cfg: "DsftConfig") -> None:
    """Refuse LoRA settings the model will not take (``lora.targets`` naming no module of it, expert targets
    with dropout) on its weightless skeleton, before the run directory is written, the data prepared or the
    weights loaded: ``dsft config show`` and ``dsft train`` alike. It is the same decision
    :func:`dsft.models.lora.build_lora_config` makes on the loaded model; where no skeleton can be built that
    later decision is the only one."""
    if cfg.train.method not in ("lora", "qlora") or not targets_could_be_refused(cfg.lora):
        return  # a full fine-tune reads no lora key; all-linear fits every model (no torch imported to say so)
    m = cfg.model
    skeleton = model_skeleton(m.name_or_path, m.cache_dir, m.revision, m.trust_remote_code)
    if skeleton is not None:
        lora_targets_of(cfg.lora, skeleton)
