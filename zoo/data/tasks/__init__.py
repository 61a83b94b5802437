"""Registered training tasks; importing this package registers the built-in ones."""

from zoo.data.tasks import (  # noqa: F401  (registration)
    algorithmic, byte_lm, graphs, listops, lm_corpora, lra, memorization, passkey, pathfinder, sparse_memory,
    urpe_synthetic)
from zoo.data.tasks.base import Objective, Task
from zoo.data.tasks.registry import available, build, get, register

__all__ = ["Objective", "Task", "available", "build", "get", "register"]
