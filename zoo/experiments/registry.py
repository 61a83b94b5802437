"""The experiments by name: `launch.reproduce NAME` (and `launch.extrapolate`) run the one registered as NAME."""

from __future__ import annotations

from zoo.experiments.base import Experiment
from zoo.registry import Registry

_REGISTRY = Registry("experiment", Experiment)
register = _REGISTRY.register
available = _REGISTRY.available


def get(name: str) -> Experiment:
  """The experiment registered as `name`; a ValueError lists the valid names otherwise."""
  return _REGISTRY.get(name)()
