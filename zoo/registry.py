"""Name → class tables for the things configs refer to by name (encodings, models, tasks).

Each registry module keeps its own `Registry` and exposes `register`, `available` and `get`; what the error
messages call the entries ("positional encoding", "model", "task") is the only difference.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
  def __init__(self, kind: str, base: type):
    self.kind = kind
    self.base = base
    self._entries: dict[str, T] = {}

  def register(self, name: str):
    """Class decorator: registers a subclass of `base` under `name` (and sets its `name` attribute)."""

    def decorator(cls: T) -> T:
      if not (isinstance(cls, type) and issubclass(cls, self.base)):
        raise TypeError(f"@register({name!r}) needs a {self.base.__name__} subclass, got {cls!r}")
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered (by {self._entries[name].__qualname__})")
      cls.name = name
      self._entries[name] = cls
      return cls

    return decorator

  def available(self) -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(self._entries))

  def get(self, name: str) -> T:
    """The class registered as `name`; a ValueError lists the valid names otherwise."""
    if not isinstance(name, str) or name not in self._entries:
      raise ValueError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.available())}")
    return self._entries[name]
