"""The positional-encoding registry: `@register("name")` on a `PositionalEncoding` subclass makes it available to
every model family, every attention implementation and the registry-driven tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from zoo.config import from_options
from zoo import decay
from zoo.registry import Registry
from zoo.positional.base import ModelDims, PositionalEncoding

_ENCODINGS = Registry("positional encoding", PositionalEncoding)
register = _ENCODINGS.register
available = _ENCODINGS.available
get = _ENCODINGS.get


def parse_options(name: str, options: Mapping[str, Any] | None = None):
  """Validates `options` for encoding `name` and returns its option dataclass."""
  cls = get(name)
  return from_options(cls.Options, options, what=f"positional encoding {name!r}")


def build(name: str, options: Mapping[str, Any] | None, dims: ModelDims, *, rngs: nnx.Rngs) -> PositionalEncoding:
  """Builds encoding `name` with validated `options` for a model of size `dims`; its parameters (position tables,
  URPE's C, SPE's filters) are exempt from weight decay (`zoo.decay`)."""
  encoding = get(name)(parse_options(name, options), dims, rngs=rngs)
  decay.exempt(encoding)
  return encoding
