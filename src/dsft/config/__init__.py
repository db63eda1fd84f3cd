"""Typed config: the schema (pydantic), YAML loading, ``--set`` overrides."""

from dsft.config.loader import describe_config, dump_config, load_config, save_config
from dsft.config.schema import (
    CleanConfig,
    DataConfig,
    DsftConfig,
    EvalConfig,
    ExportConfig,
    LoraConfig,
    ModelConfig,
    ServeConfig,
    TemplateConfig,
    TrainConfig,
)

__all__ = [
    "CleanConfig", "DataConfig", "DsftConfig", "EvalConfig", "ExportConfig", "LoraConfig", "ModelConfig",
    "ServeConfig", "TemplateConfig", "TrainConfig", "describe_config", "dump_config", "load_config",
    "save_config",
]
