"""Loading a training-stage config: YAML + ``dotted.key=value`` overrides, with the model part from a preset.

Every stage config (tokenizer, MLLM, generator) is a dataclass with a ``model: UniLIPConfig`` field; ``model.preset``
(default ``mini``) picks the preset the rest of ``model:`` modifies.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from unilip.config import UniLIPConfig
from unilip.config_io import (
    from_dict,
    load_config,
    merge_fields,
    parse_overrides,
    read_yaml,
    to_dict,
)
from unilip.errors import ConfigError

T = TypeVar("T")


def load_stage_config(cls: type[T], path: str | Path | None, overrides: list[str] = ()) -> T:
    """``cls`` from a YAML file and overrides; ``model:`` starts from ``model.preset`` (default ``mini``)."""
    data = merge_fields(cls, read_yaml(path) if path else {}, parse_overrides(overrides))
    model_data = dict(data.pop("model", None) or {})
    model_data.setdefault("preset", "mini")
    try:
        model = load_config(UniLIPConfig, None, model_data)
    except ConfigError as err:
        raise ConfigError(f"model.{err}") from None
    return from_dict(cls, {**data, "model": to_dict(model)})


def check_trainable(trainable: dict[str, float], groups, where: str = "") -> None:
    """A stage's ``trainable`` (group -> lr scale): known groups, positive scales, at least one group.

    ``where`` qualifies the unknown-group message (e.g. " for a vision stage").
    """
    for name, scale in trainable.items():
        if name not in groups:
            raise ConfigError(f"trainable.{name}: unknown group{where}; allowed: {list(groups)}")
        if not scale > 0:
            raise ConfigError(f"trainable.{name}: the lr scale must be > 0 (got {scale}); leave the group out to freeze it")
    if not trainable:
        raise ConfigError("trainable: nothing trains; list at least one of " + ", ".join(groups))
