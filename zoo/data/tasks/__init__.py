"""Registered training tasks; importing this package registers the built-in ones."""

from zoo.data.tasks import byte_lm, listops, memorization, pathfinder, sparse_memory, urpe_synthetic  # noqa: F401  (registration)
from zoo.data.tasks.base import Objective, Task
from zoo.data.tasks.registry import available, build, get, register

__all__ = ["Objective", "Task", "available", "build", "get", "register"]
