"""``model.attention_dropout`` / ``model.hidden_dropout``: the model-config attributes they set, and their refusal
where the architecture has no such dropout (setting an attribute its modules never read would change nothing).

The decision needs the architecture's config class (its attributes, defaults included, not only the keys a
``config.json`` happens to write), so it is made on the config the load will build the model from
(:func:`dsft.models.skeleton.model_config`): ``dsft config show`` and ``dsft train`` make it before the data is
prepared or the training stack imported, and the run makes it again on the config it loads.

>>> from types import SimpleNamespace
>>> llama = SimpleNamespace(attention_dropout=0.0)  # a LlamaConfig's dropout attributes
>>> dropout_overrides(SimpleNamespace(attention_dropout=0.1, hidden_dropout=None), llama, "Llama")
{'attention_dropout': 0.1}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsft.errors import ConfigError
from dsft.models.skeleton import model_config

if TYPE_CHECKING:
    from dsft.config.schema import DsftConfig, ModelConfig

# The model-config attributes that hold hidden-state (residual) dropout, by architecture family.
HIDDEN_DROPOUT_KEYS = ("hidden_dropout", "resid_pdrop", "hidden_dropout_prob")


def dropout_overrides(model: "ModelConfig", config: Any, arch: str | None = None) -> dict[str, float]:
    """The model-config overrides for ``model.attention_dropout`` / ``model.hidden_dropout`` (``model`` is the
    config's ``model`` section, ``config`` the transformers config); raises :class:`ConfigError` for a dropout the
    architecture (``arch``, by default the config's class name) does not have."""
    arch = arch or type(config).__name__.removesuffix("Config")
    overrides: dict[str, float] = {}
    if model.attention_dropout is not None:
        if not hasattr(config, "attention_dropout"):
            raise ConfigError(f"model.attention_dropout: the {arch} architecture has no attention dropout; "
                              "remove the key")
        overrides["attention_dropout"] = model.attention_dropout
    if model.hidden_dropout is not None:
        key = next((k for k in HIDDEN_DROPOUT_KEYS if hasattr(config, k)), None)
        if key is None:
            raise ConfigError(
                f"model.hidden_dropout: the {arch} architecture has no hidden-state dropout (only "
                f"{'attention dropout' if hasattr(config, 'attention_dropout') else 'none'}); use "
                "model.attention_dropout or lora.dropout instead"
            )
        overrides[key] = model.hidden_dropout
    return overrides


def check_dropout_before_loading(cfg: "DsftConfig") -> None:
    """Refuse a dropout key the model's architecture does not have, before anything heavy loads. Nothing is read
    when neither key is set; where the config cannot be had without the weights (a hub model not downloaded yet)
    the run's own check on the loaded config is the only one."""
    m = cfg.model
    if m.attention_dropout is None and m.hidden_dropout is None:
        return
    config = model_config(m.name_or_path, m.cache_dir, m.revision, m.trust_remote_code)
    if config is not None:
        dropout_overrides(m, config)
