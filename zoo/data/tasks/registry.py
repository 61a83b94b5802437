"""The task registry: `@register("name")` on a `Task` subclass; configs refer to tasks by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.config import from_options
from zoo.data.tasks.base import Task
from zoo.registry import Registry

_TASKS = Registry("task", Task)
register = _TASKS.register
available = _TASKS.available
get = _TASKS.get


def build(name: str, options: Mapping[str, Any] | None = None) -> Task:
  """The task `name` with validated options (unknown keys and bad values raise a ValueError naming the valid ones)."""
  cls = get(name)
  return cls(from_options(cls.Options, options, what=f"task {name!r}"))
