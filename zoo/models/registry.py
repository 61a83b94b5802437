"""The model registry: `@register("name")` on an nnx.Module class with a `Config` option dataclass and the
`batch_fields` it takes by keyword from a training batch besides `inputs` (the training step reads them there)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from zoo.config import from_options
from zoo.models.config import refuse_flat
from zoo.registry import Registry

_MODELS = Registry("model", nnx.Module)
register = _MODELS.register
available = _MODELS.available
get = _MODELS.get


def parse_config(name: str, config: Mapping[str, Any] | Any | None = None):
  """Validates `config` (a mapping or the family's Config) for model `name`; a key of the flat shape before the
  sections (`num_heads`) fails naming its new place."""
  if isinstance(config, Mapping):
    refuse_flat(config)
  return from_options(get(name).Config, config, what=f"model {name!r}")


def build(name: str, config: Mapping[str, Any] | Any | None = None, *, seed: int = 0,
          rngs: nnx.Rngs | None = None) -> nnx.Module:
  """Builds model `name` from a validated config.

  Parameters are created unsharded (their logical axis names are kept as metadata); the training code places them
  on a mesh with explicit shardings.
  """
  cls = get(name)
  with nnx.use_eager_sharding(False):
    return cls(parse_config(name, config), rngs=rngs or nnx.Rngs(params=seed, dropout=seed + 1))
