"""Real-model config presets reproduce the published parameter counts (built on the meta device)."""

from __future__ import annotations

import pytest

from dsft.errors import DsftError
from dsft.models.presets import (
    REAL_MODEL_FACTS,
    REAL_MODEL_PRESETS,
    active_parameters,
    count_parameters,
    real_model_config,
)


@pytest.mark.parametrize("name", sorted(REAL_MODEL_PRESETS))
def test_parameter_count_matches_the_published_size(name: str) -> None:
    config = REAL_MODEL_PRESETS[name]
    total = count_parameters(config)
    published = REAL_MODEL_FACTS[name].params_b * 1e9
    assert abs(total / published - 1) < 0.01, f"{name}: {total / 1e9:.3f}B vs {published / 1e9}B"
    # Published active sizes differ in whether embeddings count, hence the looser bound.
    active = active_parameters(config, total)
    published_active = REAL_MODEL_FACTS[name].active_params_b * 1e9
    assert abs(active / published_active - 1) < 0.15, f"{name}: active {active / 1e9:.2f}B"


def test_every_preset_has_facts_and_a_copy_is_returned() -> None:
    assert set(REAL_MODEL_PRESETS) == set(REAL_MODEL_FACTS)
    config = real_model_config("deepseek-v3")
    config["hidden_size"] = 1
    assert REAL_MODEL_PRESETS["deepseek-v3"]["hidden_size"] == 7168
    with pytest.raises(DsftError, match="deepseek-v3"):
        real_model_config("deepseek-v9")
