"""The task registry: `@register("name")` on a `Task` subclass; configs refer to tasks by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.config import from_options
from zoo.data.tasks.base import Task

_TASKS: dict[str, type[Task]] = {}


def register(name: str):
  def decorator(cls: type[Task]) -> type[Task]:
    if name in _TASKS:
      raise ValueError(f"task {name!r} is already registered (by {_TASKS[name].__qualname__})")
    cls.name = name
    _TASKS[name] = cls
    return cls

  return decorator


def available() -> tuple[str, ...]:
  return tuple(sorted(_TASKS))


def get(name: str) -> type[Task]:
  if not isinstance(name, str) or name not in _TASKS:
    raise ValueError(f"unknown task {name!r}; valid choices: {', '.join(available())}")
  return _TASKS[name]


def build(name: str, options: Mapping[str, Any] | None = None) -> Task:
  """The task `name` with validated options (unknown keys and bad values raise a ValueError naming the valid ones)."""
  cls = get(name)
  return cls(from_options(cls.Options, options, what=f"task {name!r}"))
