"""Validated option dataclasses shared by encodings and models.

Every configurable piece of zoo (a positional encoding, a model family) declares its options as a frozen dataclass.
`from_options` builds one from a plain mapping (or an `ml_collections.ConfigDict`) and turns every mistake a person
can make in a config file into a `ValueError` that names the piece, the option and the valid choices, before anything
is compiled.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def check(condition: bool, message: str) -> None:
  """Raises `ValueError(message)` unless `condition` holds (config validation in `__post_init__`)."""
  if not condition:
    raise ValueError(message)


def _type_name(hint: Any) -> str:
  if typing.get_origin(hint) is Literal:
    return " | ".join(repr(c) for c in typing.get_args(hint))
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    return " | ".join(_type_name(a) for a in typing.get_args(hint))
  if hint is type(None):
    return "None"
  return getattr(hint, "__name__", str(hint))


def _conforms(value: Any, hint: Any) -> bool:
  origin = typing.get_origin(hint)
  if origin is Literal:
    return value in typing.get_args(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_conforms(value, a) for a in typing.get_args(hint))
  if hint is Any:
    return True
  if hint is type(None):
    return value is None
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if origin in (dict, Mapping) or hint in (dict, Mapping):
    return isinstance(value, Mapping)
  if origin is tuple:
    return isinstance(value, (tuple, list))
  return isinstance(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
  """Normalises accepted spellings: ints for float options, lists for tuples, ConfigDicts for mappings."""
  if hint is float and isinstance(value, int):
    return float(value)
  if typing.get_origin(hint) is tuple and isinstance(value, list):
    return tuple(value)
  if isinstance(value, Mapping) and not isinstance(value, dict):
    return dict(value)
  return value


def _default(field: dataclasses.Field) -> Any:
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return None if field.default is dataclasses.MISSING else field.default


def _field_values(options: Any) -> dict[str, Any]:
  """An option dataclass's fields as a mapping (not deep: a section's mapping fields stay as they are)."""
  return {} if options is None else {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def from_options(cls: type[T], options: Mapping[str, Any] | T | None, *, what: str) -> T:
  """Builds the option dataclass `cls` from `options`, rejecting unknown keys and mistyped values.

  Args:
    cls: a dataclass whose fields carry type hints (`int`, `float`, `bool`, `str`, `Literal[...]`, `X | None`,
      `dict`, `tuple`).
    options: a mapping of field name to value, an instance of `cls` (returned as is), or None (all defaults). A
      field whose type is itself an option dataclass (a section: a model's `attention`) takes a mapping of the keys
      that differ from that field's default (a family's default section), built by this function too.
    what: how to name the configured piece in error messages, e.g. "positional encoding 'urpe'".
  """
  if options is None:
    options = {}
  if isinstance(options, cls):
    return options
  if not isinstance(options, Mapping):
    raise ValueError(f"{what}: options must be a mapping, got {type(options).__name__}")
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(options) - set(names))
  if unknown:
    raise ValueError(f"{what}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: "
                     f"{', '.join(names) if names else '(none)'}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  values = {}
  for key, value in options.items():
    hint = hints[key]
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):  # a section: its keys over `cls`'s default
      values[key] = from_options(hint, {**_field_values(_default(fields[key])), **value}, what=f"{what}: {key}")
      continue
    if not _conforms(value, hint):
      if typing.get_origin(hint) is Literal:
        raise ValueError(f"{what}: option {key!r} = {value!r} is not a valid choice; valid choices: "
                         f"{_type_name(hint)}")
      raise ValueError(f"{what}: option {key!r} must be {_type_name(hint)}, got {value!r} "
                       f"({type(value).__name__})")
    values[key] = _coerce(value, hint)
  return cls(**values)


def to_options(config: Any) -> dict[str, Any]:
  """The plain-dict form of an option dataclass (for logging and checkpoint manifests)."""
  return dataclasses.asdict(config)
