"""The papers' experiments and zoo's own studies, one module each, registered by name (registry.py).

Importing the package registers every experiment; `sweep.run` trains one and writes its JSONL, table and figures.
"""

from zoo.experiments import (  # noqa: F401 — registers them
    extrapolate, graph, length_tasks, memorization, sparse_memory, spe, urpe)
from zoo.experiments.base import VARIANTS, Experiment, Options, Run
from zoo.experiments.registry import available, get, register

__all__ = ["VARIANTS", "Experiment", "Options", "Run", "available", "get", "register"]
