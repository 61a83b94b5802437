"""The positional-encoding registry: `@register("name")` on a `PositionalEncoding` subclass makes it available to
every model family, every attention implementation and the registry-driven tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from zoo.config import from_options
from zoo.positional.base import ModelDims, PositionalEncoding

_ENCODINGS: dict[str, type[PositionalEncoding]] = {}


def register(name: str):
  """Class decorator: registers a `PositionalEncoding` subclass under `name`."""

  def decorator(cls: type[PositionalEncoding]) -> type[PositionalEncoding]:
    if not (isinstance(cls, type) and issubclass(cls, PositionalEncoding)):
      raise TypeError(f"@register({name!r}) needs a PositionalEncoding subclass, got {cls!r}")
    if name in _ENCODINGS:
      raise ValueError(f"positional encoding {name!r} is already registered (by {_ENCODINGS[name].__qualname__})")
    cls.name = name
    _ENCODINGS[name] = cls
    return cls

  return decorator


def available() -> tuple[str, ...]:
  """The names of all registered encodings, sorted."""
  return tuple(sorted(_ENCODINGS))


def get(name: str) -> type[PositionalEncoding]:
  """The encoding class registered as `name`; a ValueError lists the valid names otherwise."""
  if not isinstance(name, str) or name not in _ENCODINGS:
    raise ValueError(f"unknown positional encoding {name!r}; valid choices: {', '.join(available())}")
  return _ENCODINGS[name]


def parse_options(name: str, options: Mapping[str, Any] | None = None):
  """Validates `options` for encoding `name` and returns its option dataclass."""
  cls = get(name)
  return from_options(cls.Options, options, what=f"positional encoding {name!r}")


def build(name: str, options: Mapping[str, Any] | None, dims: ModelDims, *, rngs: nnx.Rngs) -> PositionalEncoding:
  """Builds encoding `name` with validated `options` for a model of size `dims`."""
  return get(name)(parse_options(name, options), dims, rngs=rngs)
